"""`map_caption`: edit captions: replace text, add a prefix or suffix (each variant of a list too)."""

from __future__ import annotations

from typing import ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Map


class MapCaption(Map):
    """Edit the caption: replacements (in order), then prefix and suffix; whitespace trimmed."""

    name: ClassVar[str] = "map_caption"
    reads: ClassVar[tuple[str, ...]] = ("caption",)
    writes: ClassVar[tuple[str, ...]] = ("caption",)
    reads_image: ClassVar[bool] = False

    prefix: str = ""
    suffix: str = ""
    replace: dict[str, str] | None = None

    def edit(self, caption: str) -> str:
        for old, new in (self.replace or {}).items():
            caption = caption.replace(old, new)
        return f"{self.prefix}{caption.strip()}{self.suffix}".strip()

    def apply(self, item: Item) -> dict[str, object] | None:
        caption = item.get("caption")
        if caption is None:
            return None
        if isinstance(caption, list):
            return {"caption": [self.edit(str(c)) for c in caption]}
        return {"caption": self.edit(str(caption))}
