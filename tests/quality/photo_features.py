"""Offline image embeddings for tests and benchmarks: colour and texture statistics of real photos.

Not CLIP (no weights may be downloaded here): per-channel RGB histograms, an HSV saturation
histogram and a gradient-magnitude histogram at 128 px, standardised over the set and scaled to unit
length like a CLIP embedding. And a hidden "preference" for simulated annotators: the photo's
colourfulness (Hasler and Suesstrunk, 2003), which the features do not contain directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def dreambooth() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        folder = parent / "shared" / "data" / "dreambooth"
        if folder.is_dir():
            return folder
    folder = Path("/work/shared/data/dreambooth")
    return folder if folder.is_dir() else None


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("RGB", (256, 256))
        return np.asarray(image.convert("RGB").resize((128, 128)), dtype=np.float64)


def features(rgb: np.ndarray) -> np.ndarray:
    parts = [np.histogram(rgb[..., c], bins=8, range=(0, 256))[0] for c in range(3)]
    top, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = np.where(top > 0, (top - low) / np.maximum(top, 1), 0)
    parts.append(np.histogram(saturation, bins=8, range=(0, 1))[0])
    gray = rgb.mean(axis=2)
    gradient = np.hypot(np.diff(gray, axis=0)[:, :-1], np.diff(gray, axis=1)[:-1, :])
    parts.append(np.histogram(gradient, bins=8, range=(0, 64))[0])
    return np.concatenate(parts).astype(np.float64) / gray.size


def colourfulness(rgb: np.ndarray) -> float:
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def embed(matrix: np.ndarray) -> np.ndarray:
    """Standardise the columns and scale every row to unit length."""
    centred = (matrix - matrix.mean(axis=0)) / (matrix.std(axis=0) + 1e-9)
    return centred / np.linalg.norm(centred, axis=1, keepdims=True)


def photo_set() -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(paths, unit-length embeddings, hidden preference scores) of the DreamBooth photos."""
    folder = dreambooth()
    assert folder is not None
    paths = sorted(folder.rglob("*.jpg"))
    images = [pixels(p) for p in paths]
    return paths, embed(np.stack([features(i) for i in images])), np.array([colourfulness(i) for i in images])
