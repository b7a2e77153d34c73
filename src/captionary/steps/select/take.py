"""`take`: keep the first N items (in a stable order: `order` if a `shuffle` set it, else source path),
or the `top` N by a score (`by: rank_score`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import GlobalStep, Outcome, require


class Take(GlobalStep):
    """Keep the first n items (by source path, or in a `shuffle`'s order), or the `top` n by the score `by`.

    `take: {top: 200, by: rank_score}` keeps the 200 highest (`lowest: true`: the lowest); ties keep the
    stable order. An item without a numeric `by` fails, naming it.
    """

    name: ClassVar[str] = "take"
    reads_image: ClassVar[bool] = False

    n: int | None = None
    top: int | None = None
    by: str = ""
    lowest: bool = False

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.by,) if self.by else ()

    def validate(self) -> None:
        require(
            (self.n is None) != (self.top is None), self, "give n (the first n) or top (with by), one of them"
        )
        count = self.n if self.n is not None else self.top
        require(count >= 0, self, f"must be >= 0; got {count}", param="n" if self.n is not None else "top")
        require(self.top is None or bool(self.by), self, "top needs by: the property to rank by", param="by")
        require(not self.lowest or bool(self.by), self, "lowest needs by", param="lowest")

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        count = self.n if self.n is not None else self.top
        assert count is not None
        if not self.by:
            return [
                Outcome() if i < count else Outcome(dropped=f"beyond the first {count}")
                for i in range(len(items))
            ]
        values = []
        for item in items:
            value = item.get(self.by)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ItemError(f"take: {item.name} has {self.by} = {value!r}, not a number")
            values.append(value)
        ranked = sorted(range(len(items)), key=lambda i: values[i] if self.lowest else -values[i])
        kept = set(ranked[:count])
        side = "lowest" if self.lowest else "top"
        return [
            Outcome() if i in kept else Outcome(dropped=f"not in the {side} {count} by {self.by}")
            for i in range(len(items))
        ]
