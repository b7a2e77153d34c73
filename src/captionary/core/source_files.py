"""The `source_files` records no later run can use (for `gc`): a local file a key names is gone, or the
item's bytes are. Keys are those the sources write (`sources/records.py`)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

from captionary.core.locations import is_http


def unusable_source_keys(
    rows: Iterable[tuple[str, str | None]], has_bytes: Callable[[str], bool]
) -> list[str]:
    """The `source_files` keys (of `(key, item)` rows) that no later run can use: the local file a key
    names is gone (a folder's image, a manifest or the image it lists, a WebDataset shard), or the
    item's bytes are (`has_bytes(item)` is false). A remote record (a URL, `hf:`, a remote shard)
    is only judged by its item's bytes."""
    exists = _Exists()
    return [
        key for key, item in rows if exists.local(key) is False or (item is not None and not has_bytes(item))
    ]


class _Exists:
    """Whether a key's local file(s) exist; a manifest or a shard is looked at once (its rows share it)."""

    def __init__(self) -> None:
        self.seen: dict[str, bool] = {}

    def shared(self, path: str) -> bool:
        if path not in self.seen:
            self.seen[path] = _exists(path)
        return self.seen[path]

    def local(self, key: str) -> bool | None:
        """True or False for a key naming local files, None for a remote one."""
        if key.startswith("hf:"):
            return None
        if key.startswith("wds:"):
            shard = key[4:]  # "wds:<shard>#<sample>"; the path itself may hold a "#"
            if not os.path.isabs(shard):
                return None  # http(s):// or pipe:
            return any(self.shared(shard[:i]) for i in _positions(shard, "#"))
        if _exists(key):  # a folder's image
            return True
        for i in _positions(key, "::"):  # "<manifest>::<image path or URL>"
            manifest, image = key[:i], key[i + 2 :]
            if is_http(image):
                return None
            if self.shared(manifest) and _exists(image):
                return True
        return False if os.path.isabs(key) else None


def _exists(path: str) -> bool:
    return os.path.exists(path) or ("\\x" in path and os.path.exists(_undo_db_text(path)))


def _positions(text: str, sep: str) -> list[int]:
    """Where `sep` occurs in `text`, last first (a separator is most likely the last one)."""
    found, i = [], text.find(sep)
    while i >= 0:
        found.append(i)
        i = text.find(sep, i + 1)
    return found[::-1]


def _undo_db_text(path: str) -> str:
    """The file system name `db_text` wrote as \\xNN escapes (bytes that are not UTF-8)."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(0xDC00 + int(m.group(1), 16)), path)
