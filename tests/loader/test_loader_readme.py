"""The README's training-loader example runs as written, on the quickstart's export."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from captionary.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_readme_training_loader_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    section = (REPO / "README.md").read_text().split("## Training loader\n", 1)[1].split("\n## ", 1)[0]
    [example] = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("ws", "out"))
    assert main(["run", str(tmp_path / "examples" / "quickstart.yaml"), "--no-progress"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {"__name__": "readme_loader_example"})
    out = capsys.readouterr().out
    assert "11 image(s), batch size 2" in out  # the quickstart exports 11 photos
    batches = [line for line in out.splitlines() if line.startswith("(")]
    assert len(batches) == 2 * 6  # two epochs of 6 batches (5 of 2 + 1 of 1)
    for line in batches:
        shape, rest = line.split(")", 1)
        bucket = [int(v) for v in rest.split("]")[0].strip(" [").split(",")]
        assert shape.endswith(f"3, {bucket[1]}, {bucket[0]}")
    assert "ohwx, " in out
