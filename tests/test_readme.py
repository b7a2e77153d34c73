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
