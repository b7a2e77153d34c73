"""Every fenced `python` / `py` and `yaml` block of the README runs as written (the convention is in
the module's docstring of `readme_blocks` below and in /work/coord/readme_blocks.md):

- a block right after `<!-- skip-test: REASON -->` is skipped with that reason (a GPU, a model
  download, an API key, a person, or a fragment of a pipeline);
- each block runs in a fresh folder holding `photos/` (the 12 bundled photos) and `examples/` (the
  repo's examples with the quickstart already run, so `examples/out` exists);
- yaml: saved as `pipeline.yaml` and run with `captionary run` in this process (`workspace: ws` when
  the block names none); python: saved as `example.py` and run with `python example.py`, exactly what
  a user who pastes it into a file gets (spawned workers import the file again).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SAMPLE_PHOTOS

FENCE = re.compile(r"^```(python|py|yaml)\s*$")
SKIP = re.compile(r"^<!--\s*skip-test:\s*(.+?)\s*-->$")


@dataclass
class Block:
    language: str
    line: int  # of the opening fence, 1-based
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.language}@README.md:{self.line}"


def readme_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        match = FENCE.match(line)
        if not match:
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        skip = SKIP.match(before.strip())
        language = "python" if match.group(1) == "py" else match.group(1)
        code = "\n".join(lines[index + 1 : end]) + "\n"
        blocks.append(Block(language, index + 1, code, skip.group(1) if skip else None))
    return blocks


BLOCKS = readme_blocks((REPO / "README.md").read_text())


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    """The repo's examples/ with the quickstart run once (what the README's first command does)."""
    from captionary.cli import main

    folder = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(REPO / "examples", folder, ignore=shutil.ignore_patterns("ws", "out"))
    assert main(["run", str(folder / "quickstart.yaml"), "--no-progress", "--workers", "0"]) == 0
    return folder


def _folder(tmp_path: Path, quickstart: Path) -> Path:
    shutil.copytree(SAMPLE_PHOTOS, tmp_path / "photos", ignore=shutil.ignore_patterns("*.md"))
    shutil.copytree(quickstart, tmp_path / "examples")
    return tmp_path


def test_the_readme_has_runnable_python_and_yaml_blocks():
    runnable = [block for block in BLOCKS if block.skip is None]
    assert {block.language for block in runnable} == {"python", "yaml"}
    assert all(block.skip for block in BLOCKS if "gpt-4o" in block.code or "clip_embed" in block.code)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language == "yaml"], ids=lambda b: b.id)
def test_readme_yaml_block_runs(block, tmp_path, quickstart, capsys):
    if block.skip:
        pytest.skip(block.skip)
    from captionary.cli import main

    folder = _folder(tmp_path, quickstart)
    spec = yaml.safe_load(block.code)
    text = block.code if "workspace" in spec else "workspace: ws\n" + block.code
    (folder / "pipeline.yaml").write_text(text)
    code = main(["run", str(folder / "pipeline.yaml"), "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, f"README.md:{block.line}: exit {code}\n{out.out}\n{out.err}"
    assert "completed in" in out.out


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language == "python"], ids=lambda b: b.id)
def test_readme_python_block_runs_as_a_script(block, tmp_path, quickstart):
    if block.skip:
        pytest.skip(block.skip)
    folder = _folder(tmp_path, quickstart)
    (folder / "example.py").write_text(block.code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"README.md:{block.line}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    assert "Traceback" not in done.stderr
    if "add_trigger" in block.code:  # the pipeline example: its trigger word reaches the captions on disk
        assert "ohwx, a photo of sks dog" in done.stdout
        assert (folder / "out" / "dog" / "00.txt").read_text() == "ohwx, a photo of sks dog\n"
        assert len(list((folder / "out").rglob("*.jpg"))) == 11


def test_a_script_without_the_main_guard_gets_one_clear_message(tmp_path, quickstart):
    """Pasted without `if __name__ == "__main__":`, the example stops before any work with one line
    naming the script's line, instead of workers re-running it (a locked workspace, a broken pool)."""
    [example] = [b for b in BLOCKS if b.language == "python" and "add_trigger" in b.code]
    lines = example.code.splitlines()
    guard = next(i for i, line in enumerate(lines) if line.startswith("if __name__"))
    body = [line[4:] for line in lines[guard + 1 :]]
    unguarded = "\n".join(lines[:guard] + body) + "\n"
    folder = _folder(tmp_path, quickstart)
    (folder / "example.py").write_text(unguarded)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "example.py"], cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if re.match(r"^[\w.]+(Error|Exception|Pool): ", line)]
    assert len(errors) == 1 and errors[0].startswith("captionary.errors.ConfigError: ")
    assert 'if __name__ == "__main__":' in errors[0] and "example.py:" in errors[0]
    assert "another run" not in done.stderr and "BrokenProcessPool" not in done.stderr
    assert not (folder / "out").exists()  # nothing started


def test_quickstart_pipeline_runs_twice(tmp_path, capsys):
    from captionary.cli import main

    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("ws", "out"))
    quickstart = tmp_path / "examples" / "quickstart.yaml"
    assert main(["run", str(quickstart), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(quickstart), "--no-progress"]) == 0
    output = capsys.readouterr().out
    rows = [line.split() for line in output.splitlines()]
    table = [row for row in rows if row and row[0] in ("load", "filter_by_size", "resize", "save")]
    assert len(table) == 4 and all(row[3] == "0" for row in table)  # computed 0
    out = tmp_path / "examples" / "out"
    assert len(list(out.rglob("*.jpg"))) == 11 and (out / "1_dog" / "00.txt").exists()
    assert "uncaptioned exported with empty caption 8" in output  # announced, not silent
