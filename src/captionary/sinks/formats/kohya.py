"""kohya: `out/dog/00.jpg` + `out/dog/00.txt` (the caption, `caption_ext`) [+ `out/dog/00.json`].

With `repeats` (a number, or one per source folder), images go to kohya's DreamBooth folders
`out/<repeats>_<folder>/` (sd-scripts ignores a folder whose name does not start with a repeat count);
`folder` puts every image in one given folder instead (e.g. `reg/1_dog`, prior-preservation class images).
A list of captions (variations) is written one per line: kohya reads the first line of a caption file,
or with `--enable_wildcard` picks one line per step. An item without a caption (`missing_caption:
empty`) gets a file holding one empty line: kohya refuses an empty caption file, and without a file it
would train the folder's class token instead."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from captionary.core.hashing import canonical_json
from captionary.core.item import Item
from captionary.errors import ItemError
from captionary.pipeline.step import require
from captionary.sinks.captions import caption_text
from captionary.sinks.encoding import PlannedFile, text_file
from captionary.sinks.formats.base import FileExport
from captionary.sinks.paths import UnsafePath, safe_relative

REPEAT_PREFIX = re.compile(r"^\d+_")


class Kohya(FileExport):
    name: ClassVar[str] = "kohya"
    writes_card: ClassVar[bool] = False

    @classmethod
    def validate(cls, save: Any) -> None:
        repeats = save.repeats
        counts = list(repeats.values()) if isinstance(repeats, dict) else [repeats]
        require(
            all(n is None or n >= 1 for n in counts), save, "repeat counts are at least 1", param="repeats"
        )
        if save.folder is not None:
            try:
                safe_relative(save.folder)
            except UnsafePath as exc:
                require(False, save, str(exc), param="folder")
            require(
                not isinstance(repeats, dict),
                save,
                "one folder takes one repeat count, not a map",
                param="repeats",
            )

    def class_folder(self, item: Item) -> str | None:
        """The folder an item goes to (`10_dog`, `reg/1_dog`), or None without repeats and folder."""
        repeats = self.save.repeats
        if self.save.folder is not None:
            parent, _, last = safe_relative(self.save.folder).rpartition("/")
            if not REPEAT_PREFIX.match(last):
                last = f"{repeats or 1}_{last}"
            return f"{parent}/{last}" if parent else last
        if repeats is None:
            return None
        top, sep, _ = item.name.partition("/")
        folder = top if sep else self.save.path.name
        count = repeats.get(folder) if isinstance(repeats, dict) else repeats
        if count is None:
            raise ItemError(f"no repeat count for folder {folder!r} in save.repeats {repeats!r}")
        return f"{count}_{folder}"

    def place(self, item: Item, stem: str) -> str:
        folder = self.class_folder(item)
        return stem if folder is None else f"{folder}/{stem.replace('/', '_')}"

    def key(self, item: Item, name: str) -> str:
        folder = self.class_folder(item)
        if folder is None:
            return name
        if self.save.folder is None and "/" in name:
            name = name.partition("/")[2]  # the source folder became the class folder
        return f"{folder}/{name.replace('/', '_')}"

    def sidecars(self, item: Item, stem: str, caption: Any) -> list[PlannedFile]:
        text = caption_text(caption) + "\n"  # never an empty file: kohya refuses one
        planned = [text_file(stem + self.save.caption_ext, text)]
        if self.save.json_sidecar:
            planned.append(text_file(stem + ".json", canonical_json(item.props) + "\n"))
        return planned
