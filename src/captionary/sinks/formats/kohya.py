"""kohya: `out/dog/00.jpg` + `out/dog/00.txt` (the caption, `caption_ext`) [+ `out/dog/00.json`]."""

from __future__ import annotations

from typing import ClassVar

from captionary.core.hashing import canonical_json
from captionary.core.item import Item
from captionary.sinks.encoding import PlannedFile, text_file
from captionary.sinks.formats.base import FileExport, caption_text


class Kohya(FileExport):
    name: ClassVar[str] = "kohya"

    def sidecars(self, item: Item, stem: str) -> list[PlannedFile]:
        planned = []
        caption = item.get(self.save.caption_property)
        if caption is not None:
            planned.append(text_file(stem + self.save.caption_ext, caption_text(caption) + "\n"))
        if self.save.json_sidecar:
            planned.append(text_file(stem + ".json", canonical_json(item.props) + "\n"))
        return planned
