"""`captionary run` with a human step prints the review URL and ends by itself once all is decided;
`captionary serve` opens the app on a workspace of past runs."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from review_helpers import Served, client_for, make_photos

from captionary.cli import main


def test_run_prints_the_review_url_and_completes_when_all_are_decided(tmp_path):
    make_photos(tmp_path / "photos", 4)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "workspace: ws\n"
        "steps:\n"
        "  - load: {path: photos}\n"
        "  - human_tag: {tags: [cat, dog], free_tags: false}\n"
        "  - save: {path: out, json_sidecar: true}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "captionary.cli", "run", str(pipeline), "--port", "0", "--no-progress"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert (
            line.startswith("Review: http://127.0.0.1:") and "token=" in line and "#/task/human_tag" in line
        )
        with client_for(line.removeprefix("Review: ").strip()) as client:
            deadline = time.monotonic() + 30
            while len(items := client.get("/api/tasks/human_tag").json()["items"]) < 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            for item in items:
                client.put(f"/api/tasks/human_tag/items/{item['id']}", json={"value": ["dog"]})
        rest = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, rest
    assert "completed" in rest
    assert len(list((tmp_path / "out").glob("*.json"))) == 4
    assert all('"tags":["dog"]' in p.read_text().replace(" ", "") for p in (tmp_path / "out").glob("*.json"))

    assert main(["run", str(pipeline), "--no-progress"]) == 0  # all decided: nothing asked, no server


def test_serve_refuses_a_folder_that_is_not_a_workspace(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a captionary workspace" in capsys.readouterr().err


def test_serve_lists_tasks_of_past_runs(tmp_path):
    from captionary import HumanFilter, Load, Workspace
    from captionary.review.decisions import DecisionStore

    photos = make_photos(tmp_path / "photos", 2)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos), progress=False)
        ids = [item.id for item in ws.items()]
    store = DecisionStore(tmp_path / "ws" / "captionary.db")
    for item in ids:
        store.decide("pick", item, "keep")
    store.close()
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> HumanFilter(task="pick"), progress=False)
    with Served(tmp_path / "ws") as served, client_for(served.url) as client:
        [task] = client.get("/api/tasks").json()
        assert (task["name"], task["kind"], task["total"], task["decided"]) == ("pick", "filter", 2, 2)


def test_binds_localhost_by_default_and_a_port_in_use_is_a_clear_error(tmp_path):
    import socket

    from captionary.errors import ConfigError
    from captionary.review.serve import ReviewServer

    (tmp_path / "ws").mkdir()
    server = ReviewServer(tmp_path / "ws", port=0)
    assert server.sock.getsockname()[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    server.stop()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match=f"127.0.0.1:{taken.getsockname()[1]}"):
            ReviewServer(tmp_path / "ws", port=taken.getsockname()[1])


def test_stopping_a_run_that_waits_for_the_person_keeps_every_decision(tmp_path):
    import signal
    import sqlite3

    make_photos(tmp_path / "photos", 3)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text("workspace: ws\nsteps:\n  - load: {path: photos}\n  - human_filter: {}\n")
    command = [sys.executable, "-m", "captionary.cli", "run", str(pipeline), "--port", "0", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().removeprefix("Review: ").strip()
        with client_for(url) as client:
            deadline = time.monotonic() + 30
            while len(items := client.get("/api/tasks/human_filter").json()["items"]) < 3:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            client.put(f"/api/tasks/human_filter/items/{items[0]['id']}", json={"value": "reject"})
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "interrupted" in out, err
    db = sqlite3.connect(tmp_path / "ws" / "captionary.db")
    assert db.execute("SELECT item, value FROM decisions").fetchall() == [(items[0]["id"], '"reject"')]
