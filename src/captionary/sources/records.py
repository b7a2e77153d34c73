"""What every file-based source shares: remembering what it read (`source_files`), so an unchanged
file is never read again, and ingesting a new one (read, check, copy into the blob store)."""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from typing import Any

from captionary.core.cache import decode_props
from captionary.core.db import db_text
from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.images import probe
from captionary.core.item import Item
from captionary.core.locations import Location, is_http
from captionary.pipeline.step import Ingested

MAX_FILE_SIZE = 1 << 30
"""The default `max_file_size` of the sources: 1 GiB, far above any image Pillow would open."""
VERIFIED = "|verified"
INSERT_ITEM = "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)"
UPSERT_SOURCE_FILE = "INSERT OR REPLACE INTO source_files VALUES (?, ?, ?, ?, ?, ?)"


def should_verify(verify: bool | None, ctx: Any) -> bool:
    """A source's `verify` setting: None means decode each new image once only when no image step
    later in the pipeline decodes it anyway (that step then reports a corrupt file)."""
    return verify if verify is not None else not ctx.decodes_later


class SourceRecords:
    """The `source_files` rows under one key prefix, and the items seen in this run (for duplicates)."""

    def __init__(self, ctx: Any, prefix: str, verify: bool, max_size: int = MAX_FILE_SIZE):
        self.ctx = ctx
        self.verify = verify
        self.max_size = max_size
        self.known = {
            key: (fingerprint, item, props, format)
            for key, fingerprint, item, props, format in ctx.ws.query(
                "SELECT path, fingerprint, item, props, format FROM source_files "
                "WHERE path >= ? AND path < ?",
                (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)),
            )
        }
        self.seen: dict[str, str] = {}

    def cached(self, key: str, name: str, fingerprint: str) -> Ingested | None:
        """The record of an unchanged file (verified, if this run verifies), or None: ingest it."""
        previous = self.known.get(key)
        if previous is None:
            return None
        recorded, item_id, props, format = previous
        if recorded != fingerprint + VERIFIED and (recorded != fingerprint or self.verify):
            return None
        item = Item(item_id, None, dict(decode_props(props)), key, name, self.ctx.ws.blobs, format)
        return self.unique(item, cached=True)

    def ingest(
        self,
        key: str,
        real_path: str,
        name: str,
        fingerprint: str,
        props: dict[str, Any],
        in_place: bool = False,
    ) -> Ingested:
        """Read a new or changed image file: check it, copy it into the blob store (or, `in_place`,
        record where it is), remember it."""
        try:
            data = read_regular_file(real_path, self.max_size)
        except (OSError, ValueError) as exc:
            reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            return Ingested(key, error=f"cannot load {db_text(os.path.basename(real_path))}: {reason}")
        location = {"file": os.path.abspath(real_path)} if in_place else None
        return self.ingest_bytes(key, data, os.path.basename(real_path), name, fingerprint, props, location)

    def ingest_bytes(
        self,
        key: str,
        data: bytes,
        label: str,
        name: str,
        fingerprint: str,
        props: dict[str, Any],
        location: Location | None = None,
    ) -> Ingested:
        """Check image bytes, store them (or, given their `location`, only where they are), remember
        them under `key` (`label` names them in errors)."""
        try:
            info = probe(data, verify=self.verify)
            canonical_json(props)
        except (ValueError, TypeError) as exc:
            return Ingested(key, error=f"cannot load {db_text(label)}: {exc}")
        props = {**props, "width": info.width, "height": info.height}
        blobs = self.ctx.ws.blobs
        digest = blobs.put(data) if location is None else blobs.put_reference(hash_bytes(data), location)
        self.ctx.writer.write(
            INSERT_ITEM, (digest, info.width, info.height, info.format, info.mode, len(data), time.time())
        )
        recorded = fingerprint + VERIFIED if self.verify else fingerprint  # unverified: verify when asked
        row = (key, recorded, digest, name, canonical_json(props), info.format)
        self.ctx.writer.write(UPSERT_SOURCE_FILE, row)
        return Ingested(key, Item(digest, None, props, key, name, self.ctx.ws.blobs, info.format))

    def unique(self, item: Item, *, cached: bool) -> Ingested:
        first = self.seen.setdefault(item.id, item.source or "")
        if first != item.source:
            return Ingested(item.source or "", dropped=f"exact duplicate of {first}")
        return Ingested(item.source or "", item, cached=cached)


def read_regular_file(path: str, max_size: int) -> bytes:
    """The bytes of a regular file (links followed), at most `max_size` of them. A FIFO, a device
    (`/dev/zero`), a socket or a folder is refused without blocking or reading: ValueError with the
    reason, as for a file over `max_size`; OSError for what the system refuses."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:  # checked on the open file: no race with a swapped name
        mode, size = os.fstat(fd).st_mode, os.fstat(fd).st_size
        if not stat.S_ISREG(mode):
            raise ValueError(f"not a regular file (a {_file_kind(mode)}); only regular files are read")
        if size > max_size:
            raise ValueError(f"{size} bytes, over max_file_size ({max_size} bytes)")
        os.set_blocking(fd, True)
        data = f.read(max_size + 1)
    if len(data) > max_size:
        raise ValueError(f"grew over max_file_size ({max_size} bytes) while it was read")
    return data


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device"}
    kinds |= {stat.S_ISSOCK: "socket", stat.S_ISDIR: "folder"}
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def stat_fingerprint(path: str | os.DirEntry) -> str:
    st = path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


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
