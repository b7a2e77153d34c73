"""kohya_json: `out/dog_00.jpg` (flat, as kohya's fine-tuning reads them) + `out.json` beside the folder:
`{"dog_00": {"caption": ..., "tags": "a, b"}}` (kohya's `--in_json`)."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.hashing import canonical_json
from captionary.core.item import Item
from captionary.sinks.formats.base import FileExport


class KohyaJson(FileExport):
    name: ClassVar[str] = "kohya_json"

    def key(self, name: str) -> str:
        return name.replace("/", "_")  # kohya keys images by file stem

    def row(self, item: Item, image_path: str) -> dict[str, Any]:
        caption = item.get(self.save.caption_property)
        first = caption[0] if isinstance(caption, list) and caption else caption
        entry: dict[str, Any] = {"key": image_path.rpartition(".")[0]}
        if first is not None:
            entry["caption"] = first
        if isinstance(item.get("tags"), list):
            entry["tags"] = ", ".join(map(str, item["tags"]))
        return entry

    def manifests(self, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        table = {row["key"]: {k: v for k, v in row.items() if k != "key"} for row in rows}
        return [(f"../{self.files.root.name}.json", (canonical_json(table) + "\n").encode())]
