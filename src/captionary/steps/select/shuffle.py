"""`shuffle`: a seeded random order, kept by the steps after it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from captionary.core.item import ORDER_PROPERTY, Item
from captionary.pipeline.step import GlobalStep, Outcome


class Shuffle(GlobalStep):
    """Put items in a random order fixed by `seed`: writes their position as the `order` property.

    Global steps after it (`take`) see items in that order, so `shuffle >> take` keeps a random
    subset; a sink right after it receives them in that order (sequential file names, WebDataset
    shards that mix classes). The same items and seed give the same order on every run.
    """

    name: ClassVar[str] = "shuffle"
    reads_image: ClassVar[bool] = False
    writes: ClassVar[tuple[str, ...]] = (ORDER_PROPERTY,)

    seed: int = 0

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        positions = list(range(len(items)))
        import random  # here, not when `import captionary` registers the step

        random.Random(self.seed).shuffle(positions)
        return [Outcome(props={ORDER_PROPERTY: position}) for position in positions]
