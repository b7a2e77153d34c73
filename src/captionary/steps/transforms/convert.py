"""`convert`: make every image plain RGB (alpha on a background colour; CMYK, 16-bit, palette)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from captionary.core.images import to_rgb
from captionary.core.item import Item
from captionary.pipeline.step import ImageMap, require

if TYPE_CHECKING:
    from PIL.Image import Image


class Convert(ImageMap):
    """Convert to RGB; transparent pixels are composited on `background` (a colour like "#ffffff")."""

    name: ClassVar[str] = "convert"

    background: str = "#ffffff"

    def validate(self) -> None:
        from PIL import ImageColor

        try:
            ImageColor.getrgb(self.background)
        except ValueError:
            require(
                False,
                self,
                f"not a colour: {self.background!r} (use e.g. '#ffffff' or 'white')",
                param="background",
            )

    def transform(self, image: Image, item: Item) -> Image:
        from PIL import ImageColor

        if image.mode == "RGB":
            return image
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale to 8 bits
            image = image.point(lambda v: v / 256).convert("L")
        return to_rgb(image, ImageColor.getrgb(self.background)[:3])
