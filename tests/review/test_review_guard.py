"""The review server's gate, against the real server (`captionary serve` in a child process): the
token is checked before any body byte is read (a 1.5 GB unauthenticated PUT is answered 401 at once),
bodies are capped (413), and on a loopback bind the Host header must name the server (DNS rebinding)."""

from __future__ import annotations

import select
import socket
from pathlib import Path

import httpx
import pytest
from review_helpers import Served, make_photos, prepare_task

from captionary import HumanCaption, Load


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    photos = make_photos(root / "photos", 2)
    items = prepare_task(root / "ws", Load(photos) >> HumanCaption(), "human_caption", 2)
    with Served(Path(root / "ws")) as server:
        yield server, items


def _answer_before_body(port: int, head: str, wait: float = 5.0) -> bytes:
    """Send only a request's head (its body announced, not sent); what the server answers meanwhile."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode())
        ready, _, _ = select.select([sock], [], [], wait)
        return sock.recv(65536) if ready else b""


def test_an_unauthenticated_huge_put_is_refused_before_its_body_is_read(served):
    server, items = served
    path = f"/api/tasks/human_caption/items/{items[0]['id']}"
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1500000000\r\n\r\n"
    )
    answer = _answer_before_body(server.port, head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]  # not one of the 1.5 GB was sent


def test_bodies_are_capped(served):
    server, items = served
    token = server.url.split("token=")[1]
    path = f"/api/tasks/human_caption/items/{items[0]['id']}"
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
    )
    assert _answer_before_body(server.port, head).startswith(b"HTTP/1.1 413")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def chunks():  # streamed without a Content-Length: cut off at the limit
        yield b'{"value": "'
        for _ in range(100):
            yield b"x" * 10_000
        yield b'"}'

    streamed = httpx.put(server.base + path, content=chunks(), headers=headers, timeout=30)
    assert streamed.status_code == 413, streamed.text
    fine = httpx.put(server.base + path, json={"value": "a sane caption"}, headers=headers, timeout=30)
    assert fine.status_code == 200 and fine.json()["saved"]


def test_a_loopback_bind_answers_only_its_own_host_names(served):
    server, _ = served
    token = server.url.split("token=")[1]
    bearer = {"Authorization": f"Bearer {token}"}
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}"):
        answer = httpx.get(server.base + "/api/tasks", headers={**bearer, "Host": host})
        assert answer.status_code == 200, host
    for host in (f"evil.example:{server.port}", "127.0.0.1", f"localhost:{server.port + 1}"):
        answer = httpx.get(server.base + "/api/tasks", headers={**bearer, "Host": host})
        assert answer.status_code == 403, host


REFUSED = ["a/b", "..", ".", "tab\there", "x" * 201]
ROUTABLE = ["a b", "what? #1 100%", "ünïcödé", "dots.in.name", "back\\slash"]


@pytest.mark.parametrize("name", REFUSED)
def test_a_task_name_the_app_cannot_route_is_refused_when_the_pipeline_is_checked(name, tmp_path):
    from captionary import HumanFilter, ParamError, parse_pipeline

    with pytest.raises(ParamError, match=r"human_filter\.task: task name .* cannot|is longer"):
        HumanFilter(task=name)
    import json

    text = f"workspace: ws\nsteps:\n  - load: {{path: .}}\n  - human_filter: {{task: {json.dumps(name)}}}\n"
    with pytest.raises(ParamError, match=r"^pipeline.yaml:4: human_filter\.task: task name"):
        parse_pipeline(text, base=tmp_path, file="pipeline.yaml")


def test_the_names_allowed_reach_the_task_route(tmp_path):
    """What the check lets through, the app's route carries (the client encodes it as one segment)."""
    from urllib.parse import quote

    from fastapi.testclient import TestClient

    from captionary import HumanFilter, Workspace
    from captionary.review.server import create_app

    Workspace(tmp_path / "ws").close()
    app = create_app(tmp_path / "ws", "t0ken")
    bearer = {"Authorization": "Bearer t0ken"}
    with TestClient(app) as client:
        for name in ROUTABLE:
            HumanFilter(task=name)  # accepted
            answer = client.get(f"/api/tasks/{quote(name, safe='')}", headers=bearer)
            assert answer.status_code == 404 and answer.json()["detail"] == f"no review task {name!r}"
        for name in REFUSED[:2]:
            answer = client.get(f"/api/tasks/{quote(name, safe='')}", headers=bearer)
            assert answer.json()["detail"] != f"no review task {name!r}"  # the route never sees it
    app.state.close()
