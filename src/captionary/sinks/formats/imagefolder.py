"""imagefolder: `out/train/dog/00.jpg` + `out/train/metadata.jsonl` (`{"file_name", caption_column, ...}`),
Hugging Face `datasets`' imagefolder layout."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.sinks.formats.base import FileExport, jsonl, properties_row


class ImageFolder(FileExport):
    name: ClassVar[str] = "imagefolder"
    image_folder: ClassVar[str] = "train/"

    def row(self, item: Item, image_path: str | None, caption: Any) -> dict[str, Any]:
        return {
            **properties_row(item, self.save.caption_property),
            "file_name": (image_path or "").removeprefix(self.image_folder),
            self.save.caption_column: caption,
        }

    def manifests(self, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        return [(f"{self.image_folder}metadata.jsonl", jsonl(rows))]
