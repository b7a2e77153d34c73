"""sharpness (variance of the Laplacian, resolution-normalised) on real photos, and filter_by_score
dropping by threshold with the reason recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from captionary import FilterByScore, ItemError, Load, ParamError, Sharpness, Workspace, parse_pipeline
from captionary.core.item import Item
from captionary.errors import ConfigError
from captionary.steps.scores.sharpness import sharpness_score

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO / "examples" / "photos"  # bundled, so every clone tests the same photos


def real_photos() -> list[Path]:
    return sorted(PHOTOS.rglob("*.jpg"))[:10]  # 640 px photos


@pytest.mark.parametrize("path", real_photos()[:6], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_sharpness_falls_with_blur_and_barely_moves_with_resolution(path):
    image = Image.open(path).convert("RGB")
    scores = [sharpness_score(image.filter(ImageFilter.GaussianBlur(r))) for r in (0, 1, 2, 4)]
    assert scores == sorted(scores, reverse=True) and scores[3] < 0.2 * scores[0], scores
    # the same photo with 19% fewer pixels (both above the 512x512 working size) scores about the same
    smaller = image.resize((image.width * 9 // 10, image.height * 9 // 10), Image.Resampling.LANCZOS)
    assert sharpness_score(smaller) == pytest.approx(scores[0], rel=0.25)


@pytest.mark.parametrize("path", real_photos()[:4], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_sharpness_is_continuous_in_image_size(path):
    """No jump at the 512 x 512 working size (exactly there no resampling used to blur, so the score
    rose by ~25%), at twice its side (where the method changes) nor at six times (where a box
    pre-shrink used to start): one pixel either side scores within 2%, nine within 5% (a larger copy
    of a photo keeps a little more detail, so the score creeps up with size)."""
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    square = image.crop((0, 0, side, side)).resize((1400, 1400), Image.Resampling.LANCZOS)
    for work in (512, 1024, 3072) if path == real_photos()[0] else (512, 1024):
        sizes = (work - 9, work - 1, work, work + 1, work + 9)
        scores = [sharpness_score(square.resize((s, s), Image.Resampling.LANCZOS)) for s in sizes]
        assert max(scores[1:4]) <= 1.02 * min(scores[1:4]), dict(zip(sizes, scores))
        assert max(scores) <= 1.05 * min(scores), dict(zip(sizes, scores))


def test_sharpness_step_and_filter_by_score_drop_blurred_photos_with_the_reason(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in real_photos()[:4]:
        image = Image.open(path).convert("RGB")
        name = f"{path.parent.name}_{path.stem}"
        image.save(folder / f"{name}.jpg", quality=95)
        image.filter(ImageFilter.GaussianBlur(6)).save(folder / f"{name}_blurred.jpg", quality=95)
    with Workspace(tmp_path / "ws") as ws:
        pipeline = Load(folder) >> Sharpness() >> FilterByScore(property="sharpness", min=50)
        summary = ws.run(pipeline, progress=False)
        items = {item.name: item for item in ws.items(include_dropped=True)}
        again = ws.run(
            Load(folder) >> Sharpness() >> FilterByScore(property="sharpness", min=1), progress=False
        )
    assert not summary.errors and summary.step("filter_by_score").dropped == 4
    for name, item in items.items():
        assert isinstance(item["sharpness"], float)
        if name.endswith("_blurred"):
            assert item["dropped_by"] == "filter_by_score"
            assert item["drop_reason"] == f"sharpness {item['sharpness']:.4g} < min 50"
            assert item["sharpness"] < items[name.removesuffix("_blurred")]["sharpness"] / 4
        else:
            assert item.get("dropped_by") is None
    # a new threshold: the scores come from the cache, only the cheap filter runs again
    assert again.step("sharpness").cached == 8 and again.step("filter_by_score").computed == 8


def test_filter_by_score_bounds_and_bad_values():
    step = FilterByScore(property="aesthetic", min=4.5, max=9)
    assert step.reads == ("aesthetic",)
    assert step.drop_reason(Item("a", props={"aesthetic": 5.0})) is None
    assert step.drop_reason(Item("a", props={"aesthetic": 3.25})) == "aesthetic 3.25 < min 4.5"
    assert step.drop_reason(Item("a", props={"aesthetic": 9.5})) == "aesthetic 9.5 > max 9"
    with pytest.raises(ItemError, match=r"x\.jpg: no property 'aesthetic' to filter on"):
        step.drop_reason(Item("a", props={}, name="x.jpg"))
    with pytest.raises(ItemError, match=r"x\.jpg: property 'aesthetic' is 'high', not a number"):
        step.drop_reason(Item("a", props={"aesthetic": "high"}, name="x.jpg"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"property": "sharpness"}, "filter_by_score: give min and/or max"),
        (
            {"property": "sharpness", "min": 5, "max": 1},
            r"filter_by_score\.max: must be >= min \(5\.0\); got 1\.0",
        ),
        ({"property": "", "min": 1}, r"filter_by_score\.property: name the property"),
    ],
)
def test_filter_by_score_bad_parameters_fail_when_built(params, message):
    with pytest.raises(ParamError, match=message):
        FilterByScore(**params)


def test_yaml_filter_by_score_error_names_the_line(tmp_path):
    text = (
        "workspace: ws\nsteps:\n  - load: {path: .}\n  - sharpness\n"
        "  - filter_by_score: {property: sharpness, min: soft}\n"
    )
    with pytest.raises(ConfigError, match=r"5.*filter_by_score\.min: expected"):
        parse_pipeline(text, base=tmp_path)
