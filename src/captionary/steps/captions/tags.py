"""`add_tags` / `remove_tags`: edit the `tags` list property."""

from __future__ import annotations

from typing import ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Map


class AddTags(Map):
    """Append tags (kept once, in order) to `tags`."""

    name: ClassVar[str] = "add_tags"
    reads: ClassVar[tuple[str, ...]] = ("tags",)
    writes: ClassVar[tuple[str, ...]] = ("tags",)
    reads_image: ClassVar[bool] = False

    tags: list[str]

    def apply(self, item: Item) -> dict[str, list[str]]:
        return {"tags": list(dict.fromkeys([*item.get("tags", []), *self.tags]))}


class RemoveTags(Map):
    """Remove the given tags from `tags`."""

    name: ClassVar[str] = "remove_tags"
    reads: ClassVar[tuple[str, ...]] = ("tags",)
    writes: ClassVar[tuple[str, ...]] = ("tags",)
    reads_image: ClassVar[bool] = False

    tags: list[str]

    def apply(self, item: Item) -> dict[str, list[str]]:
        unwanted = set(self.tags)
        return {"tags": [t for t in item.get("tags", []) if t not in unwanted]}


class RewriteTags(Map):
    """Rename tags by a mapping ({"doggo": "dog"}); a tag mapped to "" is removed. Order is kept."""

    name: ClassVar[str] = "rewrite_tags"
    reads: ClassVar[tuple[str, ...]] = ("tags",)
    writes: ClassVar[tuple[str, ...]] = ("tags",)
    reads_image: ClassVar[bool] = False

    mapping: dict[str, str]

    def apply(self, item: Item) -> dict[str, list[str]]:
        renamed = (self.mapping.get(t, t) for t in item.get("tags", []))
        return {"tags": list(dict.fromkeys(t for t in renamed if t))}
