"""`load`: every image in a folder (recursive), with `.txt` / `.caption` / `.json` sidecars as properties."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from captionary.core.atomic import read_regular_file
from captionary.core.db import db_text
from captionary.core.images import STRUCTURE, ReadableExtensions, Verify
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested, Source, require
from captionary.sources.records import (
    MAX_FILE_SIZE,
    SourceRecords,
    chunks,
    fingerprint_size,
    should_verify,
    stat_fingerprint,
)

CAPTION_SIDECARS = (".txt", ".caption")
SIDECARS = (*CAPTION_SIDECARS, ".json")
BIG_FILES = 256 << 10
"""Bytes a new file holds on average from which `load` reads with several threads (see `threads`)."""


class Load(Source):
    """Load every image under a folder; sidecar .txt/.caption become `caption`, .json its keys.

    `verify: true` decodes each new image once to catch truncated or corrupt files. By default
    (None), when no image step later in the pipeline decodes the pixels anyway (that step would
    report a corrupt file, naming it), a JPEG is checked whole without a decode (a file cut off in
    its pixel data has no end marker) and other formats are decoded; `false` reads headers only.
    Only regular files are read (links followed, then checked: a FIFO or a device is that file's
    error), each at most `max_file_size` bytes. `threads`: reading threads (default: 1 for small
    files read from their headers, 4 for large or decoded ones).
    """

    name: ClassVar[str] = "load"
    provides: ClassVar[tuple[str, ...]] = ("width", "height", "caption")  # + the .json sidecars' keys

    path: Path
    recursive: bool = True
    verify: bool | None = None
    threads: int | None = None
    max_file_size: int = MAX_FILE_SIZE  # bytes; a larger file (image or sidecar) is that item's error

    def validate(self) -> None:
        require(self.path.is_dir(), self, f"folder not found: {self.path}", param="path")
        require(self.threads is None or self.threads >= 1, self, "must be at least 1", param="threads")
        require(self.max_file_size >= 1, self, "must be at least 1 (bytes)", param="max_file_size")

    def scan(self, ctx: SourceContext) -> Iterator[Ingested]:
        verify = should_verify(self.verify, ctx)
        root = self.path.resolve()
        records = SourceRecords(
            ctx, db_text(str(root)) + os.sep, verify, self.max_file_size, complete=self.recursive
        )
        fresh: list[tuple[str, str, str, str, list[str]]] = []
        files = list(self._files(root))
        ctx.expect(len(files))
        for real_path, real_name, fingerprint, sidecars in files:
            key, name = db_text(real_path), db_text(real_name)
            if isinstance(fingerprint, Exception):
                yield Ingested(key, error=f"cannot read file: {fingerprint}")
            elif (known := records.cached(key, name, fingerprint)) is not None:
                yield known
            else:
                fresh.append((key, real_path, name, fingerprint, sidecars))
        ctx.fresh(len(fresh))
        tasks = chunks(fresh, size_of=lambda entry: fingerprint_size(entry[3]))
        with ThreadPoolExecutor(self._threads(fresh, verify), thread_name_prefix="captionary-load") as pool:
            for done in pool.map(lambda task: self._ingest_task(records, task), tasks):
                for record in done:
                    yield record if record.item is None else records.unique(record.item, cached=False)

    def _threads(self, fresh: list[tuple], verify: Verify) -> int:
        """`threads`, or by default: 4 when the new files are large or decoded (`verify: true`, or
        mostly not JPEGs under the default check), where reading, hashing and decoding release the
        GIL for long; else 1. A small file read from its header costs a few system calls, each a GIL
        hand-off between busy threads: one thread read 3,000 small JPEGs with half the CPU of four
        (README, "Where a first run's time goes")."""
        if self.threads is not None:
            return self.threads
        if not fresh:
            return 1
        sizes = [fingerprint_size(fingerprint) for _, _, _, fingerprint, _ in fresh]
        jpegs = sum(path.lower().endswith((".jpg", ".jpeg")) for _, path, _, _, _ in fresh)
        decoded = verify is True or (verify == STRUCTURE and jpegs < len(fresh) / 2)
        return 4 if decoded or sum(sizes) / len(sizes) >= BIG_FILES else 1

    def _files(self, root: Path) -> Iterator[tuple[str, str, str | Exception, list[str]]]:
        """(path, name, fingerprint, sidecar paths) for each image, sorted; fingerprint covers sidecars.
        A cached re-run spends most of its `load` here (20,000 files: one stat each), so the common
        case is kept lean: an extension is judged once per folder, and sidecars are looked for only in
        a folder that holds any."""
        extensions = ReadableExtensions()
        prefix = len(str(root)) + 1
        folders = [str(root)]
        while folders:
            folder = folders.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                yield folder, folder[prefix:], exc, []
                continue
            by_name = {entry.name: entry for entry in entries if entry.name.endswith(SIDECARS)}
            readable: dict[str, bool] = {}  # extension (as written) -> an image Pillow reads
            subfolders = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):  # symlinked folders are not followed: no loops
                    if self.recursive:
                        subfolders.append(entry.path)
                    continue
                stem, dot, ext = entry.name.rpartition(".")
                image = readable.get(ext)
                if image is None:
                    image = readable[ext] = "." + ext.lower() in extensions
                if not stem or not image:
                    continue
                ext = dot + ext
                name = entry.path[prefix : -len(ext)].replace(os.sep, "/")
                sidecars = [by_name[stem + s] for s in SIDECARS if stem + s in by_name] if by_name else []
                try:
                    fingerprint = stat_fingerprint(entry)
                    if sidecars:
                        stats = [fingerprint]
                        stats += [f"{s.name[len(stem) :]}={stat_fingerprint(s)}" for s in sidecars]
                        fingerprint = "|".join(stats)
                except OSError as exc:
                    yield entry.path, name, exc, []
                    continue
                yield entry.path, name, fingerprint, [s.path for s in sidecars]
            folders.extend(reversed(subfolders))

    def _ingest_task(self, records: SourceRecords, task: list[tuple]) -> list[Ingested]:
        with records.batch():  # the task's small originals stored in one transaction
            return [self._ingest(records, *args) for args in task]

    def _ingest(
        self, records: SourceRecords, key: str, path: str, name: str, fingerprint: str, sidecars: list[str]
    ) -> Ingested:
        try:
            props = _sidecar_props(sidecars, self.max_file_size)
        except (OSError, ValueError) as exc:
            return Ingested(key, error=f"cannot load {Path(key).name}: {exc}")
        return records.ingest(key, path, name, fingerprint, props)


def _sidecar_props(sidecars: list[str], max_size: int) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for sidecar in sidecars:
        ext = os.path.splitext(sidecar)[1]
        try:
            text = read_regular_file(sidecar, max_size).decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"sidecar {Path(sidecar).name} is not UTF-8 text") from None
        except ValueError as exc:
            raise ValueError(f"sidecar {Path(sidecar).name}: {exc}") from None
        if ext == ".json":
            try:
                values = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"sidecar {Path(sidecar).name} is not valid JSON: {exc}") from None
            if not isinstance(values, dict):
                raise ValueError(f"sidecar {Path(sidecar).name} must hold a JSON object")
            props.update(values)
        elif "caption" not in props:
            props["caption"] = text.strip()
    return props
