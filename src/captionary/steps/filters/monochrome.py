"""`filter_monochrome`: drop greyscale and near-greyscale images."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Filter, require

if TYPE_CHECKING:
    from PIL.Image import Image


class FilterMonochrome(Filter):
    """Drop images whose colourfulness (Hasler-Suesstrunk, on a 64 px copy) is below a threshold."""

    name: ClassVar[str] = "filter_monochrome"
    parallel: ClassVar[bool] = True

    threshold: float = 8.0

    def validate(self) -> None:
        require(self.threshold >= 0, self, f"must be >= 0; got {self.threshold}", param="threshold")

    def drop_reason(self, item: Item) -> str | None:
        score = colourfulness(item.image)
        if score < self.threshold:
            return f"monochrome: colourfulness {score:.1f} < threshold {self.threshold}"
        return None


def colourfulness(image: Image) -> float:
    """Hasler & Suesstrunk (2003): 0 for grey, ~15 for muted photos, 40+ for vivid ones."""
    small = image.convert("RGB")
    small.thumbnail((64, 64))
    data = small.tobytes()
    red, green, blue = data[0::3], data[1::3], data[2::3]
    rg = [r - g for r, g in zip(red, green)]
    yb = [(r + g) / 2 - b for r, g, b in zip(red, green, blue)]
    n = len(rg)
    mean_rg, mean_yb = sum(rg) / n, sum(yb) / n
    std_rg = (sum((v - mean_rg) ** 2 for v in rg) / n) ** 0.5
    std_yb = (sum((v - mean_yb) ** 2 for v in yb) / n) ** 0.5
    return (std_rg**2 + std_yb**2) ** 0.5 + 0.3 * (mean_rg**2 + mean_yb**2) ** 0.5
