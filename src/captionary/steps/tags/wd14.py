"""What a WD14 tagger needs around the model: the reference preprocessing and score selection.

Both follow SmilingWolf's wd-tagger demo (`app.py`): the image is composited on white, padded to a
centred square with white, resized to the model's input size with bicubic resampling, turned into
float32 BGR values 0-255 in NHWC order; tags score above a threshold (`>`), or above the MCut
threshold (the midpoint of the largest gap between sorted scores; at least 0.15 for characters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

MCUT_CHARACTER_FLOOR = 0.15


def prepare_image(image: Image, size: int) -> np.ndarray:
    """One image as the model's input: float32 BGR 0-255, shape (size, size, 3)."""
    import numpy as np
    from PIL import Image as PILImage

    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            canvas = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
            canvas.alpha_composite(rgba)
            image = canvas.convert("RGB")
        else:  # no alpha: compositing on white would change nothing
            image = image.convert("RGB")
    width, height = image.size
    side = max(width, height)
    if width != height:
        square = PILImage.new("RGB", (side, side), (255, 255, 255))
        square.paste(image, ((side - width) // 2, (side - height) // 2))
        image = square
    if side != size:
        image = image.resize((size, size), PILImage.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)[:, :, ::-1]


def mcut_threshold(scores: np.ndarray) -> float:
    """Midpoint of the largest gap between consecutive sorted scores (Largeron et al., MCut)."""
    import numpy as np

    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(ordered) < 2:
        return float(ordered[0]) if len(ordered) else 1.0
    gaps = ordered[:-1] - ordered[1:]
    t = int(gaps.argmax())
    return float((ordered[t] + ordered[t + 1]) / 2)


def above(
    scores: np.ndarray, indexes: np.ndarray, threshold: float | None, *, floor: float = 0.0
) -> np.ndarray:
    """The indexes whose score is > threshold (None: MCut over these scores, at least `floor`)."""
    if not len(indexes):
        return indexes
    picked = scores[indexes]
    if threshold is None:
        threshold = max(floor, mcut_threshold(picked))
    return indexes[picked > threshold]
