"""`load_webdataset`: samples from WebDataset tar shards, streamed (never extracted to disk).

Shards: local paths, brace patterns (`shards/{0000..0099}.tar`), http(s) URLs, any fsspec URL
(`s3://bucket/shards-{0..9}.tar`, `gs://`, `hf://`: streamed from the fsspec file system) and
`pipe:COMMAND`.
Members are grouped by key (`core/wds_names.py`, the `webdataset` library's rule):
`.jpg/.jpeg/.png/.webp` is the image, `.txt` the caption, `.json` more properties. An unchanged shard
is not even opened again: local ones by size and mtime, remote ones by their ETag / modification time
(fsspec `info`, an HTTP HEAD); a shard whose version cannot be told (a pipe:, a server that gives
neither) is read on every run, each sample matched by its bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, NamedTuple

from captionary.core import optional
from captionary.core.images import Verify
from captionary.core.locations import UNKNOWN, Location, is_fsspec_url, is_http, remote_fingerprint
from captionary.core.wds_stream import Sample, is_local, open_shard, read_errors, tar_samples
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested, Source, require
from captionary.sources.records import (
    MAX_FILE_SIZE,
    UPSERT_SOURCE_FILE,
    SourceRecords,
    chunks,
    should_verify,
    stat_fingerprint,
)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


class LoadWebDataset(Source):
    """Load samples from WebDataset tar shards (paths, brace patterns, http(s) or fsspec URLs, pipe:
    commands)."""

    name: ClassVar[str] = "load_webdataset"

    shards: str
    verify: bool | None = None
    timeout: float = 60.0  # seconds, for http(s) shards (fsspec file systems use their own settings)
    copy: bool = True  # False: keep uncompressed shards' images where they are (a reference per image)
    max_file_size: int = MAX_FILE_SIZE  # bytes; a larger member is reported and not read

    def validate(self) -> None:
        require(self.max_file_size >= 1, self, "must be at least 1 (bytes)", param="max_file_size")
        braceexpand = optional.require("braceexpand", "webdataset")
        self.urls = list(braceexpand.braceexpand(self.shards))  # the shards the pattern names
        for url in self.urls:
            if is_fsspec_url(url):
                _check_file_system(self, url)
            elif is_local(url):
                require(os.path.isfile(url), self, f"shard not found: {url}", param="shards")

    def scan(self, ctx: SourceContext) -> Iterator[Ingested]:
        verify = should_verify(self.verify, ctx)
        for url in self.urls:
            yield from self._shard(ctx, url, verify)

    def _shard(self, ctx: SourceContext, url: str, verify: Verify) -> Iterator[Ingested]:
        local = is_local(url)
        shard = os.path.abspath(url) if local else url
        records = SourceRecords(ctx, f"wds:{shard}#", verify)
        try:
            fingerprint = _fingerprint(shard, local, self.timeout)
        except Exception as exc:
            yield _unreadable(shard, exc)
            return
        marker = f"wds:{shard}#"  # written once a shard was read without any error
        if fingerprint != UNKNOWN and records.known.get(marker, (None,))[0] == fingerprint:
            known = [
                records.cached(k, _name(shard, k), fingerprint) for k in sorted(records.known) if k != marker
            ]
            if all(record is not None for record in known):  # unchanged: not even opened
                yield from known
                return
        errors = samples = 0
        unreadable = False
        for chunk in chunks(_read_shard(url, self.timeout, self.max_file_size), size_of=_read_size):
            done: list[Ingested] = []
            with records.batch():  # the chunk's small images stored in one transaction
                for read in chunk:
                    if isinstance(read, Damage):  # a damaged stretch, read past: reported where found
                        errors += 1
                        error = f"{shard}, byte {read.offset}: {read.message}"
                        done.append(Ingested(f"wds:{shard}@{read.offset}", error=error))
                        continue
                    if isinstance(read, Exception):
                        done.append(_unreadable(shard, read))
                        unreadable = True
                        break
                    sample_key, members, offsets = read
                    key = f"wds:{shard}#{sample_key}"
                    samples += 1
                    version = fingerprint if fingerprint != UNKNOWN else _content_fingerprint(members)
                    record = records.cached(key, _name(shard, key), version)
                    if record is None:
                        where = self._where(shard, offsets)
                        record = self._ingest(records, key, shard, sample_key, members, version, where)
                    errors += record.error is not None
                    done.append(record)
            yield from done
            if unreadable:  # the shard could not be read on
                return
        if fingerprint != UNKNOWN and not errors:
            ctx.writer.write(
                UPSERT_SOURCE_FILE, (marker, fingerprint, None, None, f'{{"samples":{samples}}}', None)
            )

    def _where(self, shard: str, offsets: dict[str, int]) -> Callable[[str, int], Location] | None:
        """How to name an image member's bytes in place (`copy: false`), when the shard allows it: an
        uncompressed tar, local, over HTTP or on an fsspec file system (a pipe: or a compressed stream
        cannot be read at an offset)."""
        if self.copy or shard.startswith("pipe:") or not shard.endswith(".tar"):
            return None
        kind = "url" if is_http(shard) else "fsspec" if is_fsspec_url(shard) else "file"
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


class Damage(NamedTuple):
    """A stretch of a shard that could not be read (and was read past)."""

    offset: int
    message: str


def _read_shard(url: str, timeout: float, max_member_size: int) -> Iterator[Sample | Damage | Exception]:
    """The shard's samples and damaged stretches in order, then what ended the reading early (an
    exception), if anything. Only reading the shard is guarded here: a sample's own failure is that
    sample's error."""
    damage: list[Damage] = []
    try:
        with open_shard(url, timeout) as stream:
            for sample in tar_samples(stream, lambda *found: damage.append(Damage(*found)), max_member_size):
                yield from damage
                damage.clear()
                yield sample
    except Exception as exc:
        yield from damage
        yield exc
        return
    yield from damage


def _name(shard: str, key: str) -> str:
    stem = os.path.basename(shard).split(".")[0]
    return f"{stem}/{key.rpartition('#')[2]}"


def _check_file_system(step: LoadWebDataset, url: str) -> None:
    """The URL's file system must be installed (`s3fs` for s3://, ...): fail before any work."""
    fsspec = optional.require("fsspec", "remote")
    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        require(False, step, f"cannot open {url}: {exc}", param="shards")


def _read_size(read: Sample | Damage | Exception) -> int:
    return 0 if isinstance(read, (Damage, Exception)) else sum(map(len, read[1].values()))


def _fingerprint(shard: str, local: bool, timeout: float) -> str:
    if local:
        return stat_fingerprint(shard)
    return UNKNOWN if shard.startswith("pipe:") else remote_fingerprint(shard, timeout)


def _content_fingerprint(members: dict[str, bytes]) -> str:
    """A sample's version when its shard's is unknown (a pipe:, a server without ETag): its bytes."""
    digest = hashlib.blake2b(digest_size=16)
    for extension in sorted(members):
        digest.update(f"{extension}:{len(members[extension])}:".encode())
        digest.update(members[extension])
    return f"{UNKNOWN}:{digest.hexdigest()}"


def _unreadable(shard: str, exc: Exception) -> Ingested:
    """The shard's error record for what reading it raised (a remote file system's own errors too:
    credentials, bucket, network); anything else is a bug and raised again."""
    if not (is_fsspec_url(shard) or isinstance(exc, read_errors())):
        raise exc
    if isinstance(exc, FileNotFoundError):
        reason = f"not found ({exc})"
    elif isinstance(exc, read_errors()):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"  # e.g. botocore's NoCredentialsError
    return Ingested(shard, error=f"{shard}: cannot read the shard: {reason}")
