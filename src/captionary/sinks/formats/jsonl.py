"""jsonl: `out/dog/00.jpg` + `out/metadata.jsonl` (`{"image_path", "caption", ...}`)."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.sinks.formats.base import FileExport, jsonl, properties_row


class Jsonl(FileExport):
    name: ClassVar[str] = "jsonl"

    def row(self, item: Item, image_path: str) -> dict[str, Any]:
        caption = item.get(self.save.caption_property)
        return {
            **properties_row(item, self.save.caption_property),
            "image_path": image_path,
            "caption": caption,
        }

    def manifests(self, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        return [("metadata.jsonl", jsonl(rows))]
