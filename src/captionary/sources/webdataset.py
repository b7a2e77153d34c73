"""`load_webdataset`: samples from WebDataset tar shards, streamed (never extracted to disk).

Shards: local paths, brace patterns (`shards/{0000..0099}.tar`), http(s) URLs and `pipe:COMMAND`.
Members are grouped by key (the name up to its first dot): `.jpg/.jpeg/.png/.webp` is the image,
`.txt` the caption, `.json` more properties. An unchanged local shard is not even opened again.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, ClassVar

from captionary.core import optional
from captionary.core.locations import Location
from captionary.pipeline.step import Ingested, Source, require
from captionary.sources.records import UPSERT_SOURCE_FILE, SourceRecords, should_verify, stat_fingerprint

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


class LoadWebDataset(Source):
    """Load samples from WebDataset tar shards (paths, brace patterns, URLs, pipe: commands)."""

    name: ClassVar[str] = "load_webdataset"

    shards: str
    verify: bool | None = None
    timeout: float = 60.0
    copy: bool = True  # False: keep uncompressed shards' images where they are (a reference per image)

    def validate(self) -> None:
        braceexpand = optional.require("braceexpand", "webdataset")
        self.__dict__["_urls"] = list(braceexpand.braceexpand(self.shards))
        for url in self.__dict__["_urls"]:
            local = not url.startswith(("http://", "https://", "pipe:"))
            require(not local or os.path.isfile(url), self, f"shard not found: {url}", param="shards")

    def scan(self, ctx: Any) -> Iterator[Ingested]:
        verify = should_verify(self.verify, ctx)
        for url in self.__dict__["_urls"]:
            yield from self._shard(ctx, url, verify)

    def _shard(self, ctx: Any, url: str, verify: bool) -> Iterator[Ingested]:
        local = not url.startswith(("http://", "https://", "pipe:"))
        shard = os.path.abspath(url) if local else url
        records = SourceRecords(ctx, f"wds:{shard}#", verify)
        fingerprint = stat_fingerprint(shard) if local else "remote"
        marker = f"wds:{shard}#"  # written once a shard was read without any error
        if local and records.known.get(marker, (None,))[0] == fingerprint:
            known = [
                records.cached(k, _name(shard, k), fingerprint) for k in sorted(records.known) if k != marker
            ]
            if all(record is not None for record in known):  # unchanged: not even opened
                yield from known
                return
        errors = samples = 0
        try:
            for sample_key, members, offsets in _samples(self._open(url)):
                key = f"wds:{shard}#{sample_key}"
                samples += 1
                record = records.cached(key, _name(shard, key), fingerprint)
                if record is None:
                    where = self._where(shard, offsets)
                    record = self._ingest(records, key, shard, sample_key, members, fingerprint, where)
                errors += record.error is not None
                yield record
        except (OSError, tarfile.TarError, EOFError, subprocess.SubprocessError) as exc:
            yield Ingested(shard, error=f"{shard}: cannot read the shard: {exc}")
            return
        if local and not errors:
            ctx.writer.write(
                UPSERT_SOURCE_FILE, (marker, fingerprint, None, None, f'{{"samples":{samples}}}', None)
            )

    @contextmanager
    def _open(self, url: str) -> Iterator[IO[bytes]]:
        if url.startswith("pipe:"):
            process = subprocess.Popen(url[5:], shell=True, stdout=subprocess.PIPE)
            try:
                yield process.stdout
            finally:
                process.stdout.close()
                if process.wait() != 0:
                    raise subprocess.SubprocessError(f"{url[5:]!r} exited with {process.returncode}")
        elif url.startswith(("http://", "https://")):
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                yield response
        else:
            with open(url, "rb") as f:
                yield f

    def _where(self, shard: str, offsets: dict[str, int]) -> Callable[[str, int], Location] | None:
        """How to name an image member's bytes in place (`copy: false`), when the shard allows it: an
        uncompressed tar, local or over HTTP (a pipe: or a compressed stream cannot be read at an offset)."""
        if self.copy or shard.startswith("pipe:") or not shard.endswith(".tar"):
            return None
        kind = "url" if shard.startswith(("http://", "https://")) else "file"
        return lambda extension, size: {kind: shard, "offset": offsets[extension], "size": size}

    def _ingest(self, records, key, shard, sample_key, members, fingerprint, in_place=None) -> Ingested:
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
        where = f"{os.path.basename(shard)}:{sample_key}"
        if image_ext is None:
            return Ingested(key, error=f"{where}: no image member (has: {', '.join(sorted(members))})")
        props: dict[str, Any] = {}
        try:
            if "json" in members:
                props.update(json.loads(members["json"]))
            if "txt" in members:
                props["caption"] = members["txt"].decode("utf-8").strip()
        except (ValueError, UnicodeDecodeError) as exc:
            return Ingested(key, error=f"{where}: bad text or JSON member: {exc}")
        data = members[image_ext]
        location = in_place(image_ext, len(data)) if in_place else None
        record = records.ingest_bytes(key, data, where, _name(shard, key), fingerprint, props, location)
        return record if record.item is None else records.unique(record.item, cached=False)


def _name(shard: str, key: str) -> str:
    stem = os.path.basename(shard).split(".")[0]
    return f"{stem}/{key.rpartition('#')[2]}"


def _samples(opened) -> Iterator[tuple[str, dict[str, bytes], dict[str, int]]]:
    """Stream a tar: yield (key, {extension: bytes}, {extension: offset of the bytes in the tar}) per
    run of members sharing a key."""
    with opened as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
        key, members, offsets = None, {}, {}
        for member in tar:
            if not member.isfile():
                continue
            base = os.path.basename(member.name)
            dot = base.find(".")
            if dot <= 0:
                continue
            sample = os.path.join(os.path.dirname(member.name), base[:dot])
            if sample != key and members:
                yield key, members, offsets
                members, offsets = {}, {}
            key = sample
            handle = tar.extractfile(member)
            extension = base[dot + 1 :].lower()
            members[extension] = handle.read() if handle else b""
            offsets[extension] = member.offset_data
        if members:
            yield key, members, offsets
