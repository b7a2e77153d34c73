"""`filter_by_size`: drop images that are too small or too large."""

from __future__ import annotations

from typing import ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Filter, require


class FilterBySize(Filter):
    """Drop images whose shorter edge, longer edge or area is out of bounds."""

    name: ClassVar[str] = "filter_by_size"
    reads: ClassVar[tuple[str, ...]] = ("width", "height")
    reads_image: ClassVar[bool] = False

    min_edge: int = 0
    max_edge: int | None = None
    min_area: int = 0

    def validate(self) -> None:
        require(self.min_edge >= 0, self, "must be >= 0", param="min_edge")
        require(
            self.max_edge is None or self.max_edge >= self.min_edge,
            self,
            f"must be >= min_edge ({self.min_edge})",
            param="max_edge",
        )

    def drop_reason(self, item: Item) -> str | None:
        width, height = item["width"], item["height"]
        short, long = min(width, height), max(width, height)
        if short < self.min_edge:
            return f"shorter edge {short} px < min_edge {self.min_edge}"
        if self.max_edge is not None and long > self.max_edge:
            return f"longer edge {long} px > max_edge {self.max_edge}"
        if width * height < self.min_area:
            return f"area {width * height} px < min_area {self.min_area}"
        return None
