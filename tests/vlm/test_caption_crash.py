"""A captioning run killed with SIGKILL keeps every caption it committed: the next run asks the model
only for the rest, so no answer is paid for twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter

import pytest
from openai_server import FakeOpenAI

from conftest import REPO


def committed(ws) -> int:
    """Caption results committed to the workspace database (read as another process would)."""
    if not (ws / "captionary.db").exists():
        return 0
    with sqlite3.connect(ws / "captionary.db") as db:
        try:
            return db.execute("SELECT count(*) FROM results WHERE step = 'caption'").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is being created
            return 0


@pytest.mark.slow
def test_killed_run_loses_no_committed_caption_and_no_answer_is_paid_twice(photos, tmp_path):
    with FakeOpenAI(hold_after=4) as server:  # answers 4 requests, then keeps the 5th waiting
        pipeline = tmp_path / "pipeline.yaml"
        pipeline.write_text(
            "workspace: ws\n"
            "steps:\n"
            f"  - load: {{path: {photos}}}\n"
            f"  - caption: {{backend: openai, model: m, base_url: '{server.url}',\n"
            "              prompt: 'Describe {name}.', batch_size: 2, concurrency: 1, max_image_edge: 64}\n"
            "  - save: {path: out}\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        args = [sys.executable, "-m", "captionary.cli", "run", str(pipeline), "--no-progress"]
        process = subprocess.Popen(
            args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while (committed(tmp_path / "ws") < 4 or len(server.hits) < 5) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert committed(tmp_path / "ws") == 4 and len(server.hits) == 5
        server.hold_after = None  # new requests are answered; the held one never is

        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        answered = Counter(h.prompt for h in server.hits if h.status == 200)
    assert len(answered) == 12 and set(answered.values()) == {1}  # each photo answered exactly once
    captions = sorted(p.read_text() for p in (tmp_path / "out").rglob("*.txt"))
    assert len(captions) == 12 and all("Describe" in c for c in captions)
