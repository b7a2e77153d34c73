"""`flip`: a mirrored copy of each image as a new item (the original goes on too by default)."""

from __future__ import annotations

from typing import ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Child, FanOut
from captionary.steps.transforms.region import Mirror

MIRROR = Mirror()


class Flip(FanOut):
    """Add a left-right mirrored copy of each image as a new item (`flipped: true`, `parent`: its id)."""

    name: ClassVar[str] = "flip"
    writes: ClassVar[tuple[str, ...]] = ("flipped",)

    keep_parent: bool = True

    def children(self, item: Item) -> list[Child]:
        return [Child("flip", {"flipped": True}, transform=(MIRROR, {}))]
