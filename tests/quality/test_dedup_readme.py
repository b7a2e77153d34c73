"""The README's deduplication example runs as written, on the sample photos plus a re-encoded copy."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("imagehash")

from captionary import Workspace, parse_pipeline

REPO = Path(__file__).resolve().parents[2]


def dedup_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Deduplication") :]
    section = section[: section.index("\n## ")]
    return re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def dedup_example() -> str:
    return dedup_examples()[0]


def test_readme_robust_example_finds_a_mirrored_crop(tmp_path):
    pytest.importorskip("cv2")
    [example] = [e for e in dedup_examples() if "method: robust" in e]
    shutil.copytree(REPO / "examples" / "photos", tmp_path / "photos", ignore=shutil.ignore_patterns("*.md"))
    original = Image.open(tmp_path / "photos" / "teapot" / "00.jpg")
    w, h = original.size
    copy = original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop(
        (w // 12, h // 12, w - w // 12, h - h // 12)
    )
    copy.save(tmp_path / "photos" / "teapot_copy.jpg", quality=90)
    parsed = parse_pipeline(example, base=tmp_path)
    with Workspace(parsed.workspace) as ws:
        summary = ws.run(parsed.pipeline, progress=False)
        dropped = [item for item in ws.items(include_dropped=True) if item.get("dropped_by") == "dedup"]
    assert not summary.errors
    assert [item.name for item in dropped] == ["teapot_copy"]
    assert dropped[0]["drop_reason"].startswith("duplicate of teapot/00 (pHash distance ")


def test_readme_dedup_example_runs(tmp_path):
    shutil.copytree(REPO / "examples" / "photos", tmp_path / "photos", ignore=shutil.ignore_patterns("*.md"))
    Image.open(tmp_path / "photos" / "dog" / "00.jpg").save(tmp_path / "photos" / "dog_copy.jpg", quality=50)
    parsed = parse_pipeline(dedup_example(), base=tmp_path)
    with Workspace(parsed.workspace) as ws:
        summary = ws.run(parsed.pipeline, progress=False)
        items = {item.name: item for item in ws.items(include_dropped=True)}
    assert not summary.errors and summary.step("dedup").dropped == 1
    [dropped] = [item for item in items.values() if item.get("dropped_by") == "dedup"]
    assert dropped.name == "dog_copy" and dropped["dup_of"] == items["dog/00"].id  # same size: first
    assert dropped["drop_reason"].startswith("duplicate of dog/00 (pHash distance ")
    assert dropped["drop_reason"].endswith("; kept the largest)")
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == summary.steps[-1].n_out
