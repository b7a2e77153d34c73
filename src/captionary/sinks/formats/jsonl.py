"""jsonl: `out/dog/00.jpg` + `out/metadata.jsonl` (`{"file_name", "image_path", "caption", ...}`): plain
JSONL for any reader, and Hugging Face imagefolder metadata (`file_name`), so `load_dataset(out)` reads it.
A text format: items without an image yet (prompt items) are rows with `image_path: null`."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.sinks.formats.base import FileExport, jsonl, properties_row


class Jsonl(FileExport):
    name: ClassVar[str] = "jsonl"
    text_only_rows: ClassVar[bool] = True

    def row(self, item: Item, image_path: str | None, caption: Any) -> dict[str, Any]:
        props = properties_row(item, self.save.caption_property)
        return {**props, "file_name": image_path, "image_path": image_path, "caption": caption}

    def manifests(self, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        return [("metadata.jsonl", jsonl(rows))]
