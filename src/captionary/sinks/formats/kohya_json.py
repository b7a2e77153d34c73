"""kohya_json: `out/dog_00.jpg` (flat, as kohya's fine-tuning reads them) + `out.json` beside the folder:
`{"dog_00": {"caption": ..., "tags": "a, b"}}` (kohya's `--in_json`)."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.hashing import canonical_json
from captionary.core.item import Item
from captionary.sinks.formats.base import FileExport


class KohyaJson(FileExport):
    name: ClassVar[str] = "kohya_json"
    writes_card: ClassVar[bool] = False

    def key(self, item: Item, name: str) -> str:
        return name.replace("/", "_")  # kohya keys images by file stem

    def metadata_path(self) -> str:
        return f"../{self.save.path.resolve().name}.json"

    def outside_ok(self) -> frozenset[str]:
        return frozenset({self.metadata_path()})

    def row(self, item: Item, image_path: str | None, caption: Any) -> dict[str, Any]:
        first = caption[0] if isinstance(caption, list) and caption else caption
        entry: dict[str, Any] = {"key": (image_path or "").rpartition(".")[0], "caption": first}
        if isinstance(item.get("tags"), list):
            entry["tags"] = ", ".join(map(str, item["tags"]))
        return entry

    def manifests(self, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        table = {row["key"]: {k: v for k, v in row.items() if k != "key"} for row in rows}
        return [(self.metadata_path(), (canonical_json(table) + "\n").encode())]

    def report_manifest(self) -> None:
        from tqdm import tqdm

        where = (self.files.root / self.metadata_path()).resolve()
        tqdm.write(f"save: kohya_json metadata written to {where} (fine_tune.py --in_json {where})")
