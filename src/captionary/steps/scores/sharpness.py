"""`sharpness`: variance of the Laplacian at a fixed working resolution.

Blur removes fine detail, and the Laplacian (the sum of second derivatives) responds to fine detail,
so its variance over the image falls as blur grows (Pech-Pacheco et al., 2000). The raw value depends on
resolution (a 4000 px photo has less detail per pixel than the same photo at 1000 px), so the image
is first resized to `WORK_AREA` pixels (keeping its aspect ratio): a photo scores about the same at
any size, and an image smaller than that is scaled up and scores as soft as it will look when trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Map

if TYPE_CHECKING:
    from PIL.Image import Image

WORK_AREA = 512 * 512


def sharpness_score(image: Image) -> float:
    """Variance of the 4-neighbour Laplacian of the greyscale image (0-255) resized to `WORK_AREA`
    pixels: ~0-50 for visibly blurred photos, hundreds to thousands for sharp ones."""
    import numpy as np
    from PIL import Image as PILImage

    grey = image.convert("L")
    scale = (WORK_AREA / (grey.width * grey.height)) ** 0.5
    size = (max(3, round(grey.width * scale)), max(3, round(grey.height * scale)))
    if size != grey.size:
        grey = grey.resize(size, PILImage.Resampling.BICUBIC, reducing_gap=3.0)
    f = np.asarray(grey, dtype=np.float32)
    laplacian = f[1:-1, :-2] + f[1:-1, 2:] + f[:-2, 1:-1] + f[2:, 1:-1] - 4.0 * f[1:-1, 1:-1]
    return round(float(laplacian.var()), 3)


class Sharpness(Map):
    """Write `sharpness`: variance of the Laplacian, resolution-normalised (higher is sharper)."""

    name: ClassVar[str] = "sharpness"
    writes: ClassVar[tuple[str, ...]] = ("sharpness",)
    parallel: ClassVar[bool] = True

    def apply(self, item: Item) -> dict[str, Any]:
        return {"sharpness": sharpness_score(item.image)}
