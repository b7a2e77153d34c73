"""What `save` writes for an item's caption, and what it does with items that have none
(`missing_caption`: empty | skip | fail), counted for the run summary."""

from __future__ import annotations

from collections import Counter
from typing import Any

from captionary.core.item import Item
from captionary.errors import ItemError

SKIP = object()
"""`Captions.of`'s answer for an item `missing_caption: skip` leaves out of the export."""

COUNTER = {
    "empty": "uncaptioned_exported_with_empty_caption",
    "skip": "uncaptioned_skipped",
    "fail": "uncaptioned_failed",
}


def caption_text(caption: Any) -> str:
    """A caption property as text: a list (caption variations) one per line."""
    return "\n".join(map(str, caption)) if isinstance(caption, list) else str(caption)


def is_missing(caption: Any) -> bool:
    if caption is None:
        return True
    if isinstance(caption, list):
        return not any(str(c).strip() for c in caption)
    return not str(caption).strip()


class Captions:
    """Reads each item's caption property and applies the `missing_caption` policy."""

    def __init__(self, caption_property: str, missing: str):
        self.caption_property = caption_property
        self.missing = missing
        self.counts: Counter[str] = Counter()
        self.words: list[int] = []  # words per exported caption (for the dataset card)

    def of(self, item: Item) -> Any:
        """The caption (a string, or a list of strings), `""` for a missing one (policy `empty`), or
        SKIP; raises ItemError for a missing one under policy `fail`."""
        caption = item.get(self.caption_property)
        if is_missing(caption):
            self.counts[COUNTER[self.missing]] += 1
            if self.missing == "fail":
                raise ItemError(
                    f"no caption ({self.caption_property!r} is missing or empty) and save.missing_caption "
                    f"is 'fail' ('empty' exports it with an empty caption, 'skip' leaves it out)"
                )
            if self.missing == "skip":
                return SKIP
            return ""
        if isinstance(caption, list):
            caption = [str(c) for c in caption]
        elif not isinstance(caption, str):
            caption = str(caption)
        self.words.append(len(caption_text(caption).split()))
        return caption
