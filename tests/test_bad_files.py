"""Broken inputs are recorded (item, step, reason, source) and never stop the run."""

from __future__ import annotations

import json
import os

import pytest

from captionary import FilterBySize, Load, Resize, RunAborted, Save, Workspace
from captionary.cli import main


@pytest.fixture
def zoo(photos):
    """The sample photos plus one of each kind of broken file."""
    good = (photos / "dog" / "00.jpg").read_bytes()
    bad = photos / "bad"
    bad.mkdir()
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    os.symlink(bad / "does-not-exist.jpg", bad / "dangling.jpg")
    (bad / "bad-sidecar.jpg").write_bytes((photos / "cat" / "00.jpg").read_bytes()[:-1] + b"\xd9")
    (bad / "bad-sidecar.json").write_text("{not json")
    return photos


EXPECTED = {
    "truncated.jpg": "corrupt or truncated image data",
    "empty.jpg": "empty file (0 bytes)",
    "notes.jpg": "not an image Pillow can read",
    "dangling.jpg": "No such file or directory",
    "bad-sidecar.jpg": "not valid JSON",
}


def test_each_broken_file_is_recorded_and_the_rest_completes(zoo, ws_path, tmp_path):
    out = tmp_path / "out"
    with Workspace(ws_path) as ws:
        pipeline = Load(zoo, verify=True) >> FilterBySize(min_edge=512) >> Resize(max_edge=256) >> Save(out)
        summary = ws.run(pipeline, progress=False)
        status = ws.last_run()
    assert summary.status == "completed"
    assert summary.step("load").n_in == 12 + len(EXPECTED)
    assert summary.step("load").failed == len(EXPECTED)
    assert summary.step("save").computed == 11
    by_file = {os.path.basename(e["source"]): e for e in status["errors"]}
    assert set(by_file) == set(EXPECTED)
    for name, reason in EXPECTED.items():
        error = by_file[name]
        assert reason in error["reason"], (name, error)
        assert name in error["reason"]  # the reason names the file
        assert error["step"] == "load"
    assert len(list(out.rglob("*.jpg"))) == 11


def test_status_json_has_exactly_the_documented_keys(zoo, ws_path, capsys):
    with Workspace(ws_path) as ws:
        ws.run(Load(zoo) >> FilterBySize(min_edge=512) >> Save(ws_path.parent / "out"), progress=False)
    assert main(["status", str(ws_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in status["steps"]] == ["load", "filter_by_size", "save"]
    for s in status["steps"]:
        assert set(s) == {"name", "in", "out", "computed", "cached", "dropped", "failed", "usage"}
    assert status["steps"][0]["failed"] == len(EXPECTED)
    assert status["steps"][1]["dropped"] == 1
    assert len(status["errors"]) == len(EXPECTED)
    for error in status["errors"]:
        assert set(error) == {"item", "step", "reason", "source"}


def test_by_default_load_verifies_only_when_no_image_step_decodes(zoo, tmp_path):
    with Workspace(tmp_path / "a") as ws:
        copied = ws.run(Load(zoo) >> Save(tmp_path / "a-out"), progress=False)
    assert copied.step("load").failed == len(EXPECTED)  # nothing else would decode: load verifies
    with Workspace(tmp_path / "b") as ws:
        resized = ws.run(Load(zoo) >> Resize(max_edge=64) >> Save(tmp_path / "b-out"), progress=False)
    assert resized.step("load").failed == len(EXPECTED) - 1
    [late] = [e for e in resized.errors if e["step"] == "resize"]
    assert late["source"].endswith("truncated.jpg") and "truncated" in late["reason"]
    with Workspace(tmp_path / "b") as ws:  # the same workspace, now a pipeline that needs verification
        again = ws.run(Load(zoo) >> Save(tmp_path / "b-out2"), progress=False)
    assert again.step("load").failed == len(EXPECTED)
    assert again.step("load").computed == 12  # the records of header-only reads are checked now


def test_the_default_check_finds_a_cut_off_jpeg_without_decoding_and_verify_true_decodes(
    photos, tmp_path, monkeypatch
):
    """With nothing later decoding, `load` checks a JPEG whole by its end marker (no pixels decoded):
    a file cut off anywhere in its pixel data fails as a decode would fail it. A complete file whose
    Huffman table is broken passes that check; `verify: true` decodes and catches it too."""
    from PIL import ImageFile

    good = (photos / "dog" / "00.jpg").read_bytes()
    bad = photos / "bad"
    bad.mkdir()
    (bad / "cut.jpg").write_bytes(good[: len(good) * 9 // 10])
    table = good.index(b"\xff\xc4")
    broken = bytearray(good)
    broken[table + 5] = 0xFF  # the first code-length count: more codes than a table may hold
    (bad / "bad-table.jpg").write_bytes(bytes(broken))
    decodes = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decodes.append(1) or real_load(image))
    with Workspace(tmp_path / "ws") as ws:
        checked = ws.run(Load(photos) >> Save(tmp_path / "out"), progress=False)
        assert {e["source"].rsplit("/", 1)[1]: e["step"] for e in checked.errors} == {"cut.jpg": "load"}
        assert "truncated" in checked.errors[0]["reason"]
        assert decodes == []  # every file a JPEG read plainly: none decoded
        decoded = ws.run(Load(photos, verify=True) >> Save(tmp_path / "out"), progress=False)
    load = decoded.step("load")
    assert (load.cached, load.computed, load.failed) == (0, 12, 2)  # checked less before: all read again
    assert {e["source"].rsplit("/", 1)[1] for e in decoded.errors} == {"cut.jpg", "bad-table.jpg"}
    assert len(decodes) == 14


def test_a_step_exception_fails_only_that_item(photos, ws_path, tmp_path):
    """A file that decodes its header but not its pixels fails in the step that decodes it (no verify)."""
    good = (photos / "dog" / "01.jpg").read_bytes()
    (photos / "dog" / "cut.jpg").write_bytes(good[: len(good) // 3])
    with Workspace(ws_path) as ws:
        summary = ws.run(
            Load(photos, verify=False) >> Resize(max_edge=128) >> Save(tmp_path / "out"),
            progress=False,
            workers=0,
        )
    assert summary.step("load").failed == 0
    assert summary.step("resize").failed == 1
    assert summary.step("resize").n_out == 12
    [error] = summary.errors
    assert error["step"] == "resize" and error["source"].endswith("cut.jpg")
    assert "truncated" in error["reason"]


def test_max_errors_aborts_the_run(zoo, ws_path, capsys):
    with Workspace(ws_path) as ws, pytest.raises(RunAborted, match="more than 2 errors") as aborted:
        ws.run(Load(zoo) >> Save(ws_path.parent / "out"), progress=False, max_errors=2)
    assert aborted.value.summary.status == "aborted"
    with Workspace(ws_path) as ws:
        assert ws.last_run()["status"] == "aborted"


def test_cli_max_errors_exit_code(zoo, tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"workspace: ws\nsteps:\n  - load: {{path: {zoo}}}\n  - save: {{path: out}}\n")
    assert main(["run", str(pipeline), "--no-progress", "--max-errors", "1"]) == 1
    assert "more than 1 errors" in capsys.readouterr().err
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    assert "5 item(s) failed" in capsys.readouterr().err
