"""text_area with the real PP-OCR text detector bundled in rapidocr, on drawn text and real photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("rapidocr")

from captionary import Load, Workspace
from captionary.steps.scores.text_area import TextArea

LINES = ["SUMMER SALE 50% OFF", "captionary reads this", "call 555 0199 today"]


def draw_text(image: Image.Image, lines: list[str], size: int, top: int) -> float:
    """Draw dark lines of text; return the fraction of the image their tight boxes cover."""
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(image)
    covered = 0
    for n, line in enumerate(lines):
        x0, y0, x1, y1 = draw.textbbox((30, top + n * int(size * 1.8)), line, font=font)
        draw.text((30, top + n * int(size * 1.8)), line, fill=(20, 20, 20), font=font)
        covered += (x1 - x0) * (y1 - y0)
    return covered / (image.width * image.height)


@pytest.fixture
def text_images(photos: Path) -> tuple[Path, dict[str, float]]:
    """Two drawn-text images and a photo with a caption burnt in, next to the plain sample photos."""
    truth = {}
    page = Image.new("RGB", (800, 600), (250, 250, 245))
    truth["page"] = draw_text(page, LINES, 44, 120)
    page.save(photos / "page.png")
    small = Image.new("RGB", (800, 600), (250, 250, 245))
    truth["small"] = draw_text(small, LINES[:1], 28, 280)
    small.save(photos / "small.png")
    photo = Image.open(photos / "dog" / "00.jpg").convert("RGB")
    band = Image.new("RGB", (photo.width, photo.height // 6), (255, 255, 255))
    photo.paste(band, (0, photo.height - band.height))
    truth["meme"] = draw_text(photo, ["GOOD BOY"], photo.height // 12, photo.height - band.height + 10)
    photo.save(photos / "meme.jpg", quality=92)
    for subject in ("cat", "duck_toy", "teapot"):  # keep the run short: 3 plain photos
        for extra in sorted((photos / subject).glob("*"))[1:]:
            extra.unlink()
    shutil.rmtree(photos / "dog")
    return photos, truth


def test_text_area_measures_drawn_text_and_ignores_plain_photos(text_images, ws_path):
    folder, truth = text_images
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(folder) >> TextArea(max_edge=800), progress=False)
        found = {item.name: item for item in ws.items()}
    assert not summary.errors
    print({name: (item["text_area"], item["text_regions"]) for name, item in found.items()}, truth)
    for name, tight in truth.items():
        measured = found[name]["text_area"]
        # detected regions hug the glyphs with a margin: between the tight boxes and ~3x them
        assert 0.7 * tight <= measured <= 3.0 * tight, (name, measured, tight)
    assert found["page"]["text_regions"] >= 3
    assert found["page"]["text_area"] > found["small"]["text_area"] > 0
    for name in ("cat/00", "duck_toy/00", "teapot/00"):
        assert found[name]["text_area"] < 0.01, (name, found[name]["text_area"])
