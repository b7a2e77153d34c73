"""`monochrome`: the colourfulness score that `filter_monochrome` decides on, kept as a property, so
a threshold can be tried (`filter_by_score`) or looked at in the review app without measuring again."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Map
from captionary.steps.filters.monochrome import colourfulness


class Monochrome(Map):
    """Write `colourfulness` (Hasler & Suesstrunk): 0 for greyscale, ~15 muted, 40+ vivid."""

    name: ClassVar[str] = "monochrome"
    writes: ClassVar[tuple[str, ...]] = ("colourfulness",)
    parallel: ClassVar[bool] = True

    def apply(self, item: Item) -> dict[str, Any]:
        return {"colourfulness": round(colourfulness(item.image), 3)}
