"""`crop_to_aspect`: crop to a target aspect ratio (centered, or at a given position)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from captionary.core import engines
from captionary.core.engines import EngineName
from captionary.core.item import Item
from captionary.pipeline.step import ImageMap, require

if TYPE_CHECKING:
    from PIL.Image import Image


class CropToAspect(ImageMap):
    """Crop to an aspect ratio like "1:1", "3:2" or 1.5; position 0..1 picks the kept window (0.5: center).

    `engine` (auto | pillow | vips) is the image library (auto: where pyvips is installed, vips for
    large images and Pillow for small ones)."""

    name: ClassVar[str] = "crop_to_aspect"

    aspect: str | float = "1:1"
    position: float = 0.5
    engine: EngineName = "auto"

    def validate(self) -> None:
        engines.check(self.engine, f"{self.name}.engine")
        require(
            0.0 <= self.position <= 1.0, self, f"must be within 0..1; got {self.position}", param="position"
        )
        try:
            ratio = self.ratio
        except ValueError:
            ratio = 0.0
        require(
            ratio > 0,
            self,
            f"must be a ratio like '3:2' or a number > 0; got {self.aspect!r}",
            param="aspect",
        )

    @property
    def ratio(self) -> float:
        if isinstance(self.aspect, str):
            width, _, height = self.aspect.partition(":")
            return float(width) / float(height) if height else float(width)
        return float(self.aspect)

    def transform(self, image: Image, item: Item) -> Image:
        width, height = image.width, image.height
        target = self.ratio
        if abs(width / height - target) < 1e-3:
            return image
        if width / height > target:  # too wide: keep full height
            new_width = max(1, round(height * target))
            left = round((width - new_width) * self.position)
            box = (left, 0, left + new_width, height)
        else:
            new_height = max(1, round(width / target))
            top = round((height - new_height) * self.position)
            box = (0, top, width, top + new_height)
        return self.in_engine(image, lambda engine, pixels: engine.crop(pixels, box))
