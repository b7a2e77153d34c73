"""Image steps that fan-out children replay from their recipe: a region crop and a mirror image.

They take no parameters: a child's recipe entry holds the properties they read (its `region`), so one
step object serves every child and its cache prefix is the same for all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import ImageMap

if TYPE_CHECKING:
    from PIL.Image import Image


class CropRegion(ImageMap):
    """Crop to the item's `region`: [x0, y0, x1, y1] as fractions of the width and height."""

    name: ClassVar[str] = "crop_region"
    reads: ClassVar[tuple[str, ...]] = ("region",)

    def transform(self, image: Image, item: Item) -> Image:
        box = pixel_box(item.get("region"), image.width, image.height)
        return image.crop(box)


class Mirror(ImageMap):
    """Mirror the image left to right."""

    name: ClassVar[str] = "mirror"

    def transform(self, image: Image, item: Item) -> Image:
        from PIL import Image as PILImage

        return image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)


def pixel_box(region: object, width: int, height: int) -> tuple[int, int, int, int]:
    """A fractional [x0, y0, x1, y1] region as a pixel box inside a width x height image (at least 1 px)."""
    if not (isinstance(region, (list, tuple)) and len(region) == 4):
        raise ItemError(f"region must be [x0, y0, x1, y1] fractions; got {region!r}")
    x0, y0, x1, y1 = (float(v) for v in region)
    left = min(max(round(x0 * width), 0), width - 1)
    top = min(max(round(y0 * height), 0), height - 1)
    right = max(min(round(x1 * width), width), left + 1)
    bottom = max(min(round(y1 * height), height), top + 1)
    return left, top, right, bottom
