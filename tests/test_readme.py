"""The README's Python example runs as written (on the sample photos)."""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import REPO, SAMPLE_PHOTOS


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    [example] = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    shutil.copytree(SAMPLE_PHOTOS, tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="cannot import"):  # exec'd code: its chain runs in-process
        exec(compile(example, "README.md", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "ohwx, a photo of sks dog" in out
    assert (tmp_path / "out" / "dog" / "00.txt").read_text() == "ohwx, a photo of sks dog\n"
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == 11


def test_quickstart_pipeline_runs_twice(tmp_path, capsys):
    from captionary.cli import main

    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("ws", "out"))
    quickstart = tmp_path / "examples" / "quickstart.yaml"
    assert main(["run", str(quickstart), "--no-progress"]) == 0
    assert main(["run", str(quickstart), "--no-progress"]) == 0
    table = capsys.readouterr().out.split("completed")[-2]
    rows = [line for line in table.strip().splitlines() if not line.startswith("save:")]
    assert all(line.split()[3] == "0" for line in rows[-4:])  # computed 0
    out = tmp_path / "examples" / "out"
    assert len(list(out.rglob("*.jpg"))) == 11 and (out / "1_dog" / "00.txt").exists()
    assert "uncaptioned exported with empty caption 8" in table  # announced, not silent
