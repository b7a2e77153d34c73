"""What every file-based source shares: remembering what it read (`source_files`), so an unchanged
file is never read again, and ingesting a new one (read, check, copy into the blob store)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from captionary.core.atomic import read_regular_file
from captionary.core.cache import decode_props
from captionary.core.db import db_text
from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.images import STRUCTURE, Verify, probe
from captionary.core.item import Item
from captionary.core.locations import Location
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested

MAX_FILE_SIZE = 1 << 30
"""The default `max_file_size` of the sources: 1 GiB, far above any image Pillow would open."""
VERIFIED = "|verified"
WHOLE = "|whole"
MARKS = {False: "", STRUCTURE: WHOLE, True: VERIFIED}
"""What a `source_files` record appends to its file's fingerprint: how the file was checked."""
ACCEPTED = {False: {"", WHOLE, VERIFIED}, STRUCTURE: {WHOLE, VERIFIED}, True: {VERIFIED}}
"""The records a run may take as they are: checked at least as this run checks."""


def unmarked(recorded: str) -> tuple[str, str]:
    """A record's fingerprint and the mark of how its file was checked."""
    for mark in (VERIFIED, WHOLE):
        if recorded.endswith(mark):
            return recorded[: -len(mark)], mark
    return recorded, ""


FILES_PER_TASK = 64
TASK_BYTES = 1 << 20
"""A reading task: up to FILES_PER_TASK new files or TASK_BYTES of them (at least one file). One
hand-off between threads per task, and the task's small originals go to the blob pack in one
transaction (`SourceRecords.batch`): each commit rewrites the pack's index pages it touched and makes
every pool worker reread the pages it had cached (tasks of 8 thumbnails wrote 540 MB to the pack's
log for 20,000 files of 3 KB; tasks of 64, 315 MB)."""
T = TypeVar("T")
INSERT_ITEM = "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)"
UPSERT_SOURCE_FILE = "INSERT OR REPLACE INTO source_files VALUES (?, ?, ?, ?, ?, ?)"


def should_verify(verify: bool | None, ctx: SourceContext) -> Verify:
    """A source's `verify` setting: None means check each new image's structure when no image step
    later in the pipeline decodes it anyway (that step then reports a corrupt file), and only read
    its header when one does. The structure check catches what a decode catches of a cut-off JPEG
    (the usual corruption: an interrupted copy or download) at no decode's cost; other formats
    are decoded once (`core/images.probe`). `verify: true` decodes every new image."""
    if verify is not None:
        return verify
    return False if ctx.decodes_later else STRUCTURE


class SourceRecords:
    """The `source_files` rows under one key prefix, and the items seen in this run (for duplicates)."""

    def __init__(
        self,
        ctx: SourceContext,
        prefix: str,
        verify: Verify,
        max_size: int = MAX_FILE_SIZE,
        *,
        complete: bool = True,
    ):
        """`max_size`: the largest file read, in bytes. `complete`: this run lists every record under
        `prefix` that still exists (a whole folder, manifest, shard or split), so an item on record it
        does not see has left the workspace (gc frees it). A source that reads only part of what it
        has on record (a crawl that goes on from where it stopped, a folder read without its
        subfolders) says False."""
        self.ctx = ctx
        self.verify = verify
        self.mark = MARKS[verify]
        self.accepted = ACCEPTED[verify]
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
        self._local = threading.local()
        if complete:
            ctx.known(item for _, item, _, _ in self.known.values() if item)  # gc: which items left

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Ingest a few files as one: their blobs are committed together when the block ends (one
        transaction of the store's pack, not a file each), and then their rows written, so the
        database never names a blob before it is stored. Yield the items only after the block."""
        rows: list[tuple[str, tuple]] = []
        self._local.rows = rows
        try:
            with self.ctx.ws.blobs.batch():
                yield
        finally:
            self._local.rows = None
        grouped: dict[str, list[tuple]] = {}
        for sql, row in rows:  # one queued write per statement, not per row
            grouped.setdefault(sql, []).append(row)
        for sql, same in grouped.items():
            self.ctx.writer.write_many(sql, same)

    def cached(self, key: str, name: str, fingerprint: str) -> Ingested | None:
        """The record of an unchanged file (verified, if this run verifies), or None: ingest it."""
        previous = self.known.get(key)
        if previous is None:
            return None
        recorded, item_id, props, format = previous
        base, mark = unmarked(recorded)
        if base != fingerprint or mark not in self.accepted:
            return None  # changed, or checked less than this run checks: read it again
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
        recorded = fingerprint + self.mark  # checked more than this later: read again then
        rows = (
            (INSERT_ITEM, (digest, info.width, info.height, info.format, info.mode, len(data), time.time())),
            (UPSERT_SOURCE_FILE, (key, recorded, digest, name, canonical_json(props), info.format)),
        )
        deferred = getattr(self._local, "rows", None)
        if deferred is not None:  # inside `batch`: written once its blobs are stored
            deferred.extend(rows)
        else:
            for sql, row in rows:
                self.ctx.writer.write(sql, row)
        return Ingested(key, Item(digest, None, props, key, name, self.ctx.ws.blobs, info.format))

    def unique(self, item: Item, *, cached: bool) -> Ingested:
        first = self.seen.setdefault(item.id, item.source or "")
        if first != item.source:
            return Ingested(item.source or "", dropped=f"exact duplicate of {first}")
        return Ingested(item.source or "", item, cached=cached)


def stat_fingerprint(path: str | os.DirEntry) -> str:
    st = path.stat() if isinstance(path, os.DirEntry) else os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def chunks(entries: Iterable[T], size_of: Callable[[T], int]) -> Iterator[list[T]]:
    """`entries` cut into reading tasks, in order: up to FILES_PER_TASK entries or TASK_BYTES of them
    by `size_of` (the entry that crosses it included), each taken only as it fills. A task's blobs
    go in one `SourceRecords.batch`; a source that ingests in its own thread holds one task's bytes."""
    chunk: list[T] = []
    size = 0
    for entry in entries:
        chunk.append(entry)
        size += size_of(entry)
        if len(chunk) == FILES_PER_TASK or size >= TASK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def fingerprint_size(fingerprint: str) -> int:
    """The file's size in bytes, from its `stat_fingerprint` (sidecars' stats may follow it)."""
    return int(fingerprint.partition(":")[0])
