"""`load_manifest`: images listed in a JSONL, JSON, CSV, TSV or Parquet file; other columns become
properties. Relative image paths resolve against the manifest's folder (or `image_root`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from captionary.core import optional
from captionary.core.db import db_text
from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.locations import is_http
from captionary.core.manifest_rows import csv_rows, jsonl_rows
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested, Source, require
from captionary.sources.download import DEADLINE, HOST_FAILURES, Downloader
from captionary.sources.records import (
    MAX_FILE_SIZE,
    SourceRecords,
    chunks,
    fingerprint_size,
    should_verify,
    stat_fingerprint,
)

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}


class LoadManifest(Source):
    """Load the images a manifest lists (JSONL/JSON/CSV/TSV/Parquet); other columns become properties.

    Image URLs are downloaded within limits: `download_deadline` seconds per URL in all,
    `max_file_size` bytes, and a host is given up (its other URLs fail at once) after
    `download_host_failures` connection failures in a row. Local images: regular files only.
    """

    name: ClassVar[str] = "load_manifest"

    path: Path
    image_column: str = "image"
    caption_column: str = "caption"
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet"] = "auto"
    verify: bool | None = None
    threads: int = 4
    download_timeout: float = 30.0  # seconds any one step may wait (connecting, each read)
    download_deadline: float = DEADLINE  # seconds one URL may take in all, retries included
    download_retries: int = 3
    downloads_per_host: int = 4
    download_host_failures: int = HOST_FAILURES  # connection failures in a row that give a host up
    copy: bool = True  # False: keep images where they are (a reference to the file or URL per image)
    max_file_size: int = MAX_FILE_SIZE  # bytes read at most per image (a file or a download)
    image_root: Path | None = None  # the folder relative image paths are in; None: the manifest's

    def validate(self) -> None:
        problem = "not a regular file" if self.path.exists() else "file not found"
        require(self.path.is_file(), self, f"{problem}: {self.path}", param="path")
        if self.image_root is not None:
            require(
                self.image_root.is_dir(), self, f"folder not found: {self.image_root}", param="image_root"
            )
        formats = ", ".join(sorted(set(FORMATS.values())))
        require(
            self.manifest_format is not None,
            self,
            f"cannot tell the format of {self.path.name}; set format: to one of {formats}",
            param="format",
        )
        if self.manifest_format == "parquet":
            optional.require("pyarrow.parquet", "parquet", package="pyarrow")
        require(self.max_file_size >= 1, self, "must be at least 1 (bytes)", param="max_file_size")
        for param in ("download_timeout", "download_deadline"):
            require(getattr(self, param) > 0, self, "must be more than 0 (seconds)", param=param)

    @property
    def manifest_format(self) -> str | None:
        return FORMATS.get(self.path.suffix.lower()) if self.format == "auto" else self.format

    def scan(self, ctx: SourceContext) -> Iterator[Ingested]:
        verify = should_verify(self.verify, ctx)
        manifest = self.path.resolve()
        records = SourceRecords(ctx, db_text(str(manifest)) + "::", verify, self.max_file_size)
        fresh: list[tuple] = []
        urls: list[tuple] = []
        for where, row in self._rows(manifest):
            if isinstance(row, str):
                yield Ingested(where, error=f"{where}: {row}")
                continue
            parsed = self._entry(manifest, where, row)
            if isinstance(parsed, Ingested):
                yield parsed
                continue
            key, real_path, name, props = parsed
            remote = is_http(real_path)
            try:
                file_part = "url" if remote else stat_fingerprint(real_path)
                fingerprint = file_part + "|" + hash_bytes(canonical_json(props).encode())
            except (TypeError, ValueError) as exc:
                yield Ingested(where, error=f"{where}: a value is not JSON-serialisable: {exc}")
                continue
            except OSError as exc:
                yield Ingested(
                    where, error=f"{where}: image not found: {db_text(real_path)} ({exc.strerror})"
                )
                continue
            known = records.cached(key, name, fingerprint)
            if known is not None:
                yield known
            else:
                (urls if remote else fresh).append((key, real_path, name, fingerprint, props))
        ctx.expect(ctx.produced + len(fresh) + len(urls))
        ctx.fresh(len(fresh) + len(urls))
        tasks = chunks(fresh, size_of=lambda entry: fingerprint_size(entry[3]))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="captionary-load") as pool:
            for done in pool.map(lambda task: self._ingest_task(records, task), tasks):
                for record in done:
                    yield record if record.item is None else records.unique(record.item, cached=False)
        yield from self._download(records, urls)

    def _ingest_task(self, records: SourceRecords, task: list[tuple]) -> list[Ingested]:
        with records.batch():  # the task's small originals stored in one transaction
            return [records.ingest(*args, in_place=not self.copy) for args in task]

    def _download(self, records: SourceRecords, urls: list[tuple]) -> Iterator[Ingested]:
        """Download new image URLs (the blob store and `source_files` are the cache: never twice).
        Each body is checked and stored by the thread that downloaded it, not the driver."""
        downloader = Downloader(
            per_host=self.downloads_per_host,
            retries=self.download_retries,
            timeout=self.download_timeout,
            deadline=self.download_deadline,
            max_size=self.max_file_size,
            host_failures=self.download_host_failures,
        )
        entries = {entry[1]: entry for entry in urls}

        def store(url: str, result: bytes | str) -> Ingested:
            key, _, name, fingerprint, props = entries[url]
            if isinstance(result, str):
                return Ingested(key, error=f"{url}: {result}")
            location = None if self.copy else {"url": url}
            return records.ingest_bytes(key, result, url, name, fingerprint, props, location)

        for _, record in downloader.fetch_all(entries, then=store):
            yield record if record.item is None else records.unique(record.item, cached=False)

    def _entry(self, manifest: Path, where: str, row: dict[str, Any]) -> tuple | Ingested:
        image = row.get(self.image_column)
        if not isinstance(image, str) or not image:
            columns = ", ".join(map(str, row))
            return Ingested(
                where,
                error=f"{where}: no image path in column {self.image_column!r} "
                f"(columns: {columns}; set image_column:)",
            )
        props = {k: v for k, v in row.items() if k != self.image_column and v is not None}
        if self.caption_column != "caption" and self.caption_column in props:
            props["caption"] = props.pop(self.caption_column)
        if is_http(image):
            try:
                stem = os.path.splitext(os.path.basename(urlsplit(image).path))[0] or "image"
            except ValueError as exc:  # e.g. "http://[::1": Invalid IPv6 URL
                return Ingested(where, error=f"{where}: malformed URL {image!r}: {exc}")
            return f"{db_text(str(manifest))}::{image}", image, stem, props
        root = self.image_root.resolve() if self.image_root is not None else manifest.parent
        real_path = os.path.normpath(os.path.join(root, os.path.expanduser(image)))
        relative = os.path.relpath(real_path, root)
        stem = os.path.splitext(relative if not relative.startswith("..") else os.path.basename(relative))[0]
        key = f"{db_text(str(manifest))}::{db_text(real_path)}"
        return key, real_path, db_text(stem.replace(os.sep, "/")), props

    def _rows(self, manifest: Path) -> Iterator[tuple[str, dict[str, Any] | str]]:
        """(where, row) with `where` like "meta.csv:7"; a string row is the reason it is unusable."""
        name = manifest.name
        if self.manifest_format == "parquet":
            import pyarrow.parquet as pq

            for number, row in enumerate(pq.read_table(manifest).to_pylist(), start=1):
                yield f"{name} row {number}", row
            return
        if self.manifest_format == "jsonl":
            yield from jsonl_rows(manifest, name)
            return
        if self.manifest_format != "json":
            yield from csv_rows(manifest, name, "\t" if self.manifest_format == "tsv" else ",")
            return
        with open(manifest, encoding="utf-8") as f:
            try:
                rows = json.load(f)
            except json.JSONDecodeError as exc:
                yield f"{name}:{exc.lineno}", f"invalid JSON: {exc.msg}"
                return
        if not isinstance(rows, list):
            yield name, "a JSON manifest is a list of records"
            return
        for number, row in enumerate(rows, start=1):
            yield f"{name} record {number}", row if isinstance(row, dict) else "not a JSON object"
