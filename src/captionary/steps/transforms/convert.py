"""`convert`: make every image plain RGB (alpha on a background colour; CMYK, 16-bit, palette)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from captionary.core import engines
from captionary.core.engines import EngineName
from captionary.core.item import Item
from captionary.pipeline.step import ImageMap, require

if TYPE_CHECKING:
    from PIL.Image import Image


class Convert(ImageMap):
    """Convert to RGB; transparent pixels are composited on `background` (a colour like "#ffffff").

    `engine` (auto | pillow | vips) is the image library (auto: where pyvips is installed, vips for
    large images and Pillow for small ones)."""

    name: ClassVar[str] = "convert"

    background: str = "#ffffff"
    engine: EngineName = "auto"

    def validate(self) -> None:
        engines.check(self.engine, f"{self.name}.engine")
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

        background = ImageColor.getrgb(self.background)[:3]
        return self.in_engine(image, lambda engine, pixels: engine.to_rgb(pixels, background))
