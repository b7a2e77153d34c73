"""`captionary push`: the request flow of an upload, against a stand-in Hub on 127.0.0.1 that answers in
the Hub API's documented shape (create repo, preupload, NDJSON commit). What the real Hub adds (its Xet
or LFS storage for large binary files, permissions, the dataset viewer) is not exercised here."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from captionary import Load, Save, Workspace

pytest.importorskip("huggingface_hub")
REPO = Path(__file__).resolve().parents[1]


class StandInHub(BaseHTTPRequestHandler):
    """The Hub API endpoints an upload uses; everything else is answered 404 and recorded."""

    log: list[tuple[str, str, str | None]] = []
    files: dict[str, bytes] = {}
    cards: list[str] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.log.append(("POST", self.path, self.headers.get("Authorization")))
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "validate-yaml"]:  # the card's metadata, checked before the upload
            self.cards.append(json.loads(body)["content"])
            return self.answer({"errors": [], "warnings": []})
        if parts[:3] == ["api", "repos", "create"]:
            request = json.loads(body)
            repo = (
                f"{request['organization']}/{request['name']}"
                if request.get("organization")
                else request["name"]
            )
            return self.answer(
                {"url": f"http://{self.headers['Host']}/datasets/{repo}", "name": repo, "id": "1"}
            )
        if parts[:2] == ["api", "datasets"] and parts[4] == "preupload":
            listed = json.loads(body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                for f in listed
            ]
            return self.answer({"files": modes, "commitOid": "0" * 40})
        if parts[:2] == ["api", "datasets"] and parts[4] == "commit":
            for line in body.splitlines():
                entry = json.loads(line)
                if entry["key"] == "file":
                    self.files[entry["value"]["path"]] = base64.b64decode(entry["value"]["content"])
            repo = "/".join(parts[2:4])
            return self.answer(
                {
                    "commitUrl": f"http://{self.headers['Host']}/datasets/{repo}/commit/{'a' * 40}",
                    "commitOid": "a" * 40,
                    "pullRequestUrl": None,
                }
            )
        self.answer({"error": "not in the stand-in"}, 404)

    def do_GET(self):
        self.log.append(("GET", self.path, self.headers.get("Authorization")))
        self.answer({"error": "not in the stand-in"}, 404)

    def answer(self, payload: dict, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub():
    StandInHub.log, StandInHub.files, StandInHub.cards = [], {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def push(out: Path, endpoint: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": "hf_standin_token",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)
    command = [sys.executable, "-m", "captionary.cli", "push", str(out), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_push_uploads_the_export_with_its_card(photos, tmp_path, hub):
    out = tmp_path / "out"
    with Workspace(tmp_path / "ws") as ws:
        ws.run(
            Load(photos) >> Save(out, format="parquet", embed_images=True, license="cc-by-4.0"),
            progress=False,
        )
    done = push(out, hub, tmp_path, "me/dogs-and-cats")
    assert done.returncode == 0, done.stderr
    assert "uploaded" in done.stdout and "me/dogs-and-cats" in done.stdout
    assert ("POST", "/api/repos/create", "Bearer hf_standin_token") in StandInHub.log
    assert set(StandInHub.files) == {"README.md", "data/train-00000-of-00001.parquet"}  # not .images/
    assert (
        StandInHub.files["data/train-00000-of-00001.parquet"]
        == (out / "data/train-00000-of-00001.parquet").read_bytes()
    )
    card = StandInHub.files["README.md"].decode()
    assert card.startswith("---\nlicense: cc-by-4.0\n")
    assert "- items: 12" in card and "- with a caption: 3" in card and "caption words:" in card
    assert '"load"' in card and '"save"' in card  # the pipeline that made it
    assert str(tmp_path) not in card  # no local paths published
    assert StandInHub.cards == [card]  # its metadata was sent for validation


def test_push_of_a_kohya_folder_writes_a_short_card_first(photos, tmp_path, hub):
    out = tmp_path / "kohya"
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos) >> Save(out, repeats=10), progress=False)
    done = push(out, hub, tmp_path, "me/kohya-set")
    assert done.returncode == 0, done.stderr
    assert "- images: 12" in StandInHub.files["README.md"].decode()
    assert "10_dog/00.jpg" in StandInHub.files


def test_push_refuses_a_missing_folder_and_a_bad_repo_id(tmp_path, hub):
    missing = push(tmp_path / "nope", hub, tmp_path, "me/x")
    assert missing.returncode == 2 and "no such folder" in missing.stderr
    (tmp_path / "out").mkdir()
    bad = push(tmp_path / "out", hub, tmp_path, "just-a-name")
    assert bad.returncode == 2 and "namespace/name" in bad.stderr
