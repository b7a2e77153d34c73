"""`resize`: scale images down (never up, unless asked), keeping the aspect ratio."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from captionary.core import engines
from captionary.core.engines import EngineName
from captionary.core.item import Item
from captionary.pipeline.step import ImageMap, require

if TYPE_CHECKING:
    from PIL.Image import Image


PILLOW_ONLY = ("hamming", "box")
"""Resampling filters only the Pillow engine has."""


class Resize(ImageMap):
    """Scale to a longer edge of max_edge, a shorter edge of min_edge, or about target_area pixels.

    resample: lanczos (sharpest), bicubic, hamming (the closest to OpenCV's INTER_AREA, img2dataset's
    filter: 0.4/255 apart; ~60% of lanczos' CPU), bilinear, box (the mean of the whole pixels each
    output pixel covers: the cheapest, blockier at scales between whole numbers) or nearest; hamming
    and box are Pillow's (libvips has no such kernel: `engine: auto` then means Pillow).
    `engine` (auto | pillow | vips) is the image library (auto: where pyvips is installed, vips for
    large images and Pillow for small ones)."""

    name: ClassVar[str] = "resize"

    max_edge: int | None = None
    min_edge: int | None = None
    target_area: int | None = None
    upscale: bool = False
    resample: Literal["lanczos", "bicubic", "hamming", "bilinear", "box", "nearest"] = "lanczos"
    engine: EngineName = "auto"

    def validate(self) -> None:
        engines.check(self.engine, f"{self.name}.engine")
        require(
            not (self.resample in PILLOW_ONLY and self.engine == "vips"),
            self,
            f"{self.resample} is a Pillow filter (libvips has none); use engine: pillow or auto",
            param="resample",
        )
        given = [p for p in ("max_edge", "min_edge", "target_area") if getattr(self, p) is not None]
        require(len(given) == 1, self, "give exactly one of max_edge, min_edge or target_area")
        for param in ("max_edge", "min_edge", "target_area"):
            value = getattr(self, param)
            require(value is None or value > 0, self, f"must be > 0; got {value}", param=param)

    def scale(self, width: int, height: int) -> float:
        if self.max_edge is not None:
            return self.max_edge / max(width, height)
        if self.min_edge is not None:
            return self.min_edge / min(width, height)
        return (self.target_area / (width * height)) ** 0.5

    @property
    def engine_name(self) -> str:
        if self.resample in PILLOW_ONLY and self.engine == "auto":
            return "pillow"
        return super().engine_name

    def draft_scale(self, width: int, height: int) -> float | None:
        """Decode JPEGs at no less than twice the target size (what Pillow's thumbnail does); for
        box, at no less than the target size (the decoder's DCT scaling averages as box does)."""
        scale = (1 if self.resample == "box" else 2) * self.scale(width, height)
        return scale if scale < 1 else None

    def transform(self, image: Image, item: Item) -> Image:
        width, height = image.width, image.height
        scale = self.scale(width, height)
        if scale == 1 or (scale > 1 and not self.upscale):
            drafted = "width" in item and (width, height) != (item.get("width"), item.get("height"))
            return image.copy() if drafted else image  # shrunk by the decoder (box): still a change
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return self.in_engine(image, lambda engine, pixels: engine.resize(pixels, size, self.resample))
