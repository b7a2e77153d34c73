"""`filter_by_score`: drop items whose numeric property is outside [min, max], saying why."""

from __future__ import annotations

import math
from typing import ClassVar

from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import Filter, require


class FilterByScore(Filter):
    """Keep items whose `property` (a score: aesthetic, sharpness, nsfw, ...) lies within [min, max]."""

    name: ClassVar[str] = "filter_by_score"
    reads_image: ClassVar[bool] = False

    property: str
    min: float | None = None
    max: float | None = None

    def validate(self) -> None:
        require(bool(self.property), self, "name the property to compare", param="property")
        require(self.min is not None or self.max is not None, self, "give min and/or max")
        require(
            self.min is None or self.max is None or self.min <= self.max,
            self,
            f"must be >= min ({self.min}); got {self.max}",
            param="max",
        )

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.property,)

    def expected_properties(self) -> tuple[str, ...]:
        return (self.property,)

    def drop_reason(self, item: Item) -> str | None:
        value = item.get(self.property)
        if value is None:
            raise ItemError(
                f"{item.name}: no property {self.property!r} to filter on "
                "(run the step that computes it first)"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ItemError(f"{item.name}: property {self.property!r} is {value!r}, not a number")
        if self.min is not None and value < self.min:
            return f"{self.property} {value:.4g} < min {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{self.property} {value:.4g} > max {self.max:g}"
        return None
