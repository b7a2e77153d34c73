"""`filter_by_aspect_ratio`: drop images that are too wide or too tall."""

from __future__ import annotations

from typing import ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Filter, require


class FilterByAspectRatio(Filter):
    """Drop images whose width / height ratio is outside [min_ratio, max_ratio]."""

    name: ClassVar[str] = "filter_by_aspect_ratio"
    reads: ClassVar[tuple[str, ...]] = ("width", "height")
    reads_image: ClassVar[bool] = False

    min_ratio: float | None = None
    max_ratio: float | None = None

    def validate(self) -> None:
        require(
            self.min_ratio is not None or self.max_ratio is not None,
            self,
            "give min_ratio and/or max_ratio (width / height, e.g. 0.5 and 2.0)",
        )
        for param in ("min_ratio", "max_ratio"):
            value = getattr(self, param)
            require(value is None or value > 0, self, f"must be > 0; got {value}", param=param)
        if self.min_ratio is not None and self.max_ratio is not None:
            require(self.min_ratio <= self.max_ratio, self, "must be >= min_ratio", param="max_ratio")

    def drop_reason(self, item: Item) -> str | None:
        ratio = item.width / item.height
        if self.min_ratio is not None and ratio < self.min_ratio:
            return f"aspect ratio {ratio:.3f} < min_ratio {self.min_ratio}"
        if self.max_ratio is not None and ratio > self.max_ratio:
            return f"aspect ratio {ratio:.3f} > max_ratio {self.max_ratio}"
        return None
