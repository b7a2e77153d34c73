"""`load`: every image in a folder (recursive), with `.txt` / `.caption` / `.json` sidecars as properties."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from captionary.core.cache import decode_props
from captionary.core.db import db_text
from captionary.core.hashing import canonical_json
from captionary.core.images import probe, readable_extensions
from captionary.core.item import Item
from captionary.pipeline.step import Ingested, Source, require

CAPTION_SIDECARS = (".txt", ".caption")
SIDECARS = (*CAPTION_SIDECARS, ".json")
VERIFIED = "|verified"
INSERT_ITEM = "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)"
UPSERT_SOURCE_FILE = "INSERT OR REPLACE INTO source_files VALUES (?, ?, ?, ?, ?, ?)"


class Load(Source):
    """Load every image under a folder; sidecar .txt/.caption become `caption`, .json its keys.

    `verify` decodes each new image once to catch truncated or corrupt files. By default (None) it
    does so only when no image step later in the pipeline decodes the pixels anyway (that step
    then reports a corrupt file, naming it).
    """

    name: ClassVar[str] = "load"

    path: Path
    recursive: bool = True
    verify: bool | None = None
    threads: int = 4

    def validate(self) -> None:
        require(self.path.is_dir(), self, f"folder not found: {self.path}", param="path")
        require(self.threads >= 1, self, "must be at least 1", param="threads")

    def scan(self, ctx: Any) -> Iterator[Ingested]:
        verify = self.verify if self.verify is not None else not ctx.decodes_later
        root = self.path.resolve()
        known = {
            path: (fingerprint, item, name, props, format)
            for path, fingerprint, item, name, props, format in ctx.ws.query(
                "SELECT path, fingerprint, item, name, props, format FROM source_files "
                "WHERE path >= ? AND path < ?",
                (db_text(str(root)) + os.sep, db_text(str(root)) + chr(ord(os.sep) + 1)),
            )
        }
        seen: dict[str, str] = {}
        fresh: list[tuple[str, str, str, list[str]]] = []
        files = list(self._files(root))
        ctx.stats[0].expected = len(files)
        for real_path, real_name, fingerprint, sidecars in files:
            path, name = db_text(real_path), db_text(real_name)
            if isinstance(fingerprint, Exception):
                yield Ingested(path, error=f"cannot read file: {fingerprint}")
                continue
            previous = known.get(path)
            recorded = previous[0] if previous is not None else None
            if recorded == fingerprint + VERIFIED or (recorded == fingerprint and not verify):
                first = seen.setdefault(previous[1], path)
                if first != path:
                    yield Ingested(path, dropped=f"exact duplicate of {first}")
                    continue
                props = dict(decode_props(previous[3]))  # memoised decode, private copy
                item = Item(previous[1], None, props, path, name, ctx.ws.blobs, previous[4])
                yield Ingested(path, item, cached=True)
            else:
                fresh.append((real_path, name, fingerprint, sidecars))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="captionary-load") as pool:
            for record in pool.map(lambda args: self._ingest(ctx, verify, *args), fresh):
                yield record if record.item is None else _unique(record.item, seen, cached=False)

    def _files(self, root: Path) -> Iterator[tuple[str, str, str | Exception, list[str]]]:
        """(path, name, fingerprint, sidecar paths) for each image, sorted; fingerprint covers sidecars."""
        extensions = readable_extensions()
        prefix = len(str(root)) + 1
        folders = [str(root)]
        while folders:
            folder = folders.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                yield folder, folder[prefix:], exc, []
                continue
            by_name = {entry.name: entry for entry in entries}
            subfolders = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):  # symlinked folders are not followed: no loops
                    if self.recursive:
                        subfolders.append(entry.path)
                    continue
                stem, dot, ext = entry.name.rpartition(".")
                if not stem or "." + ext.lower() not in extensions:
                    continue
                ext = dot + ext
                name = entry.path[prefix : -len(ext)].replace(os.sep, "/")
                sidecars = [by_name[stem + s] for s in SIDECARS if stem + s in by_name]
                try:
                    stats = [_stat(entry)] + [f"{s.name[len(stem) :]}={_stat(s)}" for s in sidecars]
                except OSError as exc:
                    yield entry.path, name, exc, []
                    continue
                yield entry.path, name, "|".join(stats), [s.path for s in sidecars]
            folders.extend(reversed(subfolders))

    def _ingest(
        self, ctx: Any, verify: bool, path: str, name: str, fingerprint: str, sidecars: list[str]
    ) -> Ingested:
        real_path, path = path, db_text(path)
        try:
            with open(real_path, "rb") as f:
                data = f.read()
            info = probe(data, verify=verify)
            props: dict[str, Any] = {**_sidecar_props(sidecars), "width": info.width, "height": info.height}
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return Ingested(path, error=f"cannot load {Path(path).name}: {reason}")
        digest = ctx.ws.blobs.put(data)
        ctx.writer.write(
            INSERT_ITEM, (digest, info.width, info.height, info.format, info.mode, len(data), time.time())
        )
        recorded = fingerprint + VERIFIED if verify else fingerprint  # unverified: verify when asked
        ctx.writer.write(
            UPSERT_SOURCE_FILE, (path, recorded, digest, name, canonical_json(props), info.format)
        )
        return Ingested(path, Item(digest, None, props, path, name, ctx.ws.blobs, info.format))


def _stat(entry: os.DirEntry) -> str:
    st = entry.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _sidecar_props(sidecars: list[str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for sidecar in sidecars:
        ext = os.path.splitext(sidecar)[1]
        try:
            text = Path(sidecar).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"sidecar {Path(sidecar).name} is not UTF-8 text") from None
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


def _unique(item: Item, seen: dict[str, str], *, cached: bool) -> Ingested:
    first = seen.setdefault(item.id, item.source or "")
    if first != item.source:
        return Ingested(item.source or "", dropped=f"exact duplicate of {first}")
    return Ingested(item.source or "", item, cached=cached)
