"""Loader fixtures: real photos cropped to varied aspect ratios, exported with captionary's save step."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from captionary import Load, Save, Workspace

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "photos"

# (source photo, size, caption file text): the sizes cover landscape, portrait and square buckets
VARIED = [
    ("dog/00.jpg", (300, 200), "sks dog, grass, sunny, outdoors"),
    ("dog/01.jpg", (200, 300), "sks dog, sofa, indoors"),
    ("dog/02.jpg", (256, 256), "sks dog, close-up, smiling, brown eyes, fluffy"),
    ("dog/03.jpg", (400, 150), "sks dog, beach, panorama"),
    ("cat/00.jpg", (150, 400), "a cat\na grey cat on a chair"),
    ("cat/01.jpg", (333, 250), "cat, window, sunlight"),
    ("teapot/00.jpg", (250, 333), "teapot, table, ceramic"),
    ("teapot/01.jpg", (512, 512), "teapot, white background"),
    ("duck_toy/00.jpg", (320, 240), "duck toy, yellow, bath"),
    ("duck_toy/01.jpg", (240, 320), "duck toy, shelf"),
]


@pytest.fixture
def varied(tmp_path: Path) -> Path:
    """10 real photos resized and cropped to the VARIED sizes, with .txt captions (one has two lines)."""
    folder = tmp_path / "varied"
    for name, size, caption in VARIED:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(SAMPLES / name) as image:
            image.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(target, quality=90)
        target.with_suffix(".txt").write_text(caption + "\n")
    return folder


def expected(folder: Path) -> list[tuple[tuple[str, ...], tuple[int, int]]]:
    """(captions, size) of every photo in `folder`, sorted: what a reader must give back."""
    rows = []
    for image in sorted(folder.rglob("*.jpg")):
        lines = image.with_suffix(".txt").read_text().splitlines()
        with Image.open(image) as opened:
            rows.append((tuple(line for line in lines if line), opened.size))
    return sorted(rows)


@pytest.fixture
def export(varied: Path, tmp_path: Path):
    """export(format, **save options) -> the folder captionary's real save step wrote."""

    def run(fmt: str, **options) -> Path:
        out = tmp_path / f"out-{fmt}"
        with Workspace(tmp_path / "ws") as ws:
            ws.run(Load(varied) >> Save(out, format=fmt, **options), progress=False)
        return out

    return run
