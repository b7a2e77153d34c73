"""Killing a run at any moment loses nothing committed; the next run completes the work."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO

SLOW_STEP = '''
import time
from typing import ClassVar
from captionary import Map


class TCrashSlow(Map):
    """Takes a while per image, so the run can be killed in the middle."""

    name: ClassVar[str] = "t_crash_slow"
    writes: ClassVar[tuple[str, ...]] = ("slow",)

    def apply(self, item):
        time.sleep(0.4)  # pool tasks of 4 items: 1.6 s each, so a stop lands well before the last ends
        return {"slow": item.id[:8]}
'''


def write_project(tmp_path: Path, photos: Path) -> Path:
    (tmp_path / "t_crash_steps.py").write_text(SLOW_STEP)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        textwrap.dedent(f"""\
        workspace: ws
        imports: [t_crash_steps]
        steps:
          - load: {{path: {photos}}}
          - resize: {{max_edge: 256}}
          - t_crash_slow
          - save: {{path: out, json_sidecar: true}}
        """)
    )
    return pipeline


def command(pipeline: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{pipeline.parent}{os.pathsep}{REPO / 'src'}"}
    args = [sys.executable, "-m", "captionary.cli", "run", str(pipeline), "--no-progress"]
    return {"args": args, "cwd": pipeline.parent, "env": env, "text": True}


def start(pipeline: Path) -> subprocess.Popen:
    """The run as from a terminal: Ctrl-C (SIGINT) at its default, even when the tests themselves run in
    the background of a non-interactive shell, which starts them with SIGINT ignored (and Python then
    never raises KeyboardInterrupt)."""
    return subprocess.Popen(
        **command(pipeline),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def committed_results(db: Path, step: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT count(*) FROM results WHERE step = ?", (step,)).fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0
    finally:
        con.close()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def check_finished(tmp_path: Path, rerun: subprocess.CompletedProcess) -> None:
    out = tmp_path / "out"
    images = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert len(images) == 12 and len(set(images)) == 12
    leftovers = [p.name for p in out.rglob("*") if p.is_file() and p.suffix not in (".jpg", ".txt", ".json")]
    assert leftovers == []
    for image in out.rglob("*.jpg"):
        assert json.loads(image.with_suffix(".json").read_text())["slow"]
    con = sqlite3.connect(tmp_path / "ws" / "captionary.db")
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("SELECT count(*) FROM results WHERE step = 't_crash_slow'").fetchone() == (12,)
    con.close()


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_completes(photos, tmp_path):
    pipeline = write_project(tmp_path, photos)
    db = tmp_path / "ws" / "captionary.db"
    process = start(pipeline)
    wait_for(lambda: committed_results(db, "t_crash_slow") >= 3)
    workers = children(process.pid)
    assert workers, "resize runs in a process pool"
    process.send_signal(signal.SIGKILL)
    process.wait()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), timeout=15)  # no orphans
    before = committed_results(db, "t_crash_slow")
    assert 3 <= before < 12

    rerun = subprocess.run(**command(pipeline), capture_output=True)
    assert rerun.returncode == 0, rerun.stderr
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "captionary.cli", "status", str(tmp_path / "ws"), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    slow = next(s for s in status["steps"] if s["name"] == "t_crash_slow")
    assert slow["computed"] == 12 - before  # what was committed before the kill is not redone
    assert slow["cached"] == before
    check_finished(tmp_path, rerun)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_committed_work(photos, tmp_path):
    pipeline = write_project(tmp_path, photos)
    db = tmp_path / "ws" / "captionary.db"
    process = start(pipeline)
    wait_for(lambda: committed_results(db, "t_crash_slow") >= 2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone() == ("interrupted",)
    con.close()
    rerun = subprocess.run(**command(pipeline), capture_output=True)
    assert rerun.returncode == 0, rerun.stderr
    check_finished(tmp_path, rerun)


def test_temp_files_a_killed_run_left_are_cleared_by_the_next_run(photos, tmp_path):
    """Only a killed run leaves temp files: a run after it clears them and records that run as
    killed; a run after a run that finished does not list the output folder for them."""
    from captionary import Load, Save, Workspace
    from captionary.core.atomic import TMP_PREFIX

    out = tmp_path / "out"
    pipeline = Load(photos) >> Save(out)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(pipeline, progress=False)
        left = out / "dog" / f"{TMP_PREFIX}999-1-0"
        left.write_bytes(b"half a file")
        ws.run(pipeline, progress=False)
        assert left.exists()  # the last run finished: no folder listing
        ws.db.execute("INSERT INTO runs (started, status) VALUES (0, 'running')")  # what a SIGKILL leaves
        killed = ws.db.execute("SELECT max(id) FROM runs").fetchone()[0]
        again = ws.run(pipeline, progress=False)
        assert not left.exists() and again.computed == 0
        status = ws.db.execute("SELECT status FROM runs WHERE id = ?", (killed,)).fetchone()[0]
    assert status == "killed"
