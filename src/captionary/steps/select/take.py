"""`take`: keep the first N items (in a stable order: `order` if a `shuffle` set it, else source path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import GlobalStep, Outcome, require


class Take(GlobalStep):
    """Keep the first n items (by source path, or in a `shuffle`'s order); drop the rest."""

    name: ClassVar[str] = "take"
    reads_image: ClassVar[bool] = False

    n: int

    def validate(self) -> None:
        require(self.n >= 0, self, f"must be >= 0; got {self.n}", param="n")

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        return [
            Outcome() if i < self.n else Outcome(dropped=f"beyond the first {self.n}")
            for i in range(len(items))
        ]
