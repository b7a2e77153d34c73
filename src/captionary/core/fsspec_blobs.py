"""A blob store on any fsspec URL (`s3://bucket/prefix`, `gs://...`, `file:///shared/objects`), so
workers on other machines read the same blobs. The same layout as the local store: `ab/<sha256>`, and
`ab/<sha256>.ref` for references (core/locations.py). Needs `fsspec` plus the file system's own package
(`s3fs`, `gcsfs`, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from captionary.core import optional
from captionary.core.blobstore import REF_SUFFIX
from captionary.core.hashing import hash_bytes
from captionary.core.locations import Location, read_location

TMP = "tmp"
# Object stores write whole objects (a reader never sees half of one), so blobs go straight into place
# there: one PUT instead of PUT + COPY + DELETE. Other file systems write to tmp/ and move.
WHOLE_OBJECT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "memory"})


class FsspecBlobStore:
    """Immutable bytes named by their sha256, under an fsspec URL (same interface as `BlobStore`)."""

    def __init__(self, url: str):
        fsspec = optional.require("fsspec", "remote")
        self.root = url.rstrip("/")  # what workers are given to open the same store
        self.fs, self.base = fsspec.core.url_to_fs(self.root)
        self.base = self.base.rstrip("/")
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else set(self.fs.protocol)
        self.direct = bool(protocols & WHOLE_OBJECT_PROTOCOLS)
        self.fs.makedirs(f"{self.base}/{TMP}", exist_ok=True)

    def path(self, digest: str) -> str:
        return f"{self.base}/{digest[:2]}/{digest}"

    def __contains__(self, digest: str) -> bool:
        path = self.path(digest)
        return self.fs.exists(path) or self.fs.exists(path + REF_SUFFIX)

    def get(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            try:
                location = json.loads(self.fs.cat_file(path + REF_SUFFIX))
            except FileNotFoundError:
                raise FileNotFoundError(f"blob {digest} is not in {self.root}") from None
        return read_location(location, digest)

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store bytes once. Written under a temporary name, then moved into place, so a reader never
        sees half a blob. On object stores, which write whole objects anyway, written straight into
        place without looking first: one PUT of the same bytes again costs less than the HEAD and LIST
        an existence check takes there for every new blob."""
        digest = digest or hash_bytes(data)
        if self.direct or not self.fs.exists(self.path(digest)):
            self._write(self.path(digest), data)
        return digest

    def put_reference(self, digest: str, location: Location) -> str:
        if not self.fs.exists(self.path(digest)):
            self._write(self.path(digest) + REF_SUFFIX, json.dumps(location, sort_keys=True).encode())
        return digest

    def digests(self) -> Iterator[str]:
        names = set()
        for path in self.fs.find(self.base):
            folder, _, name = path.rpartition("/")
            if folder.rpartition("/")[2] != TMP:
                names.add(name.removesuffix(REF_SUFFIX))
        yield from sorted(names)

    def delete_many(self, digests: Iterable[str]) -> int:
        return sum(self.delete(digest) for digest in digests)

    def delete(self, digest: str) -> int:
        freed = 0
        for path in (self.path(digest), self.path(digest) + REF_SUFFIX):
            try:
                freed += int(self.fs.size(path))
                self.fs.rm(path)
            except FileNotFoundError:
                pass
        return freed

    def clear_tmp(self) -> None:
        """Remove temporary files a killed writer left."""
        for path in self.fs.find(f"{self.base}/{TMP}"):
            self.fs.rm(path)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Nothing is packed here: each blob is its own object, written when `put` returns."""
        return contextlib.nullcontext()

    def compact(self) -> None:
        pass

    def close(self) -> None:
        pass

    def _write(self, path: str, data: bytes) -> None:
        if self.direct:
            self.fs.pipe_file(path, data)
            return
        tmp = f"{self.base}/{TMP}/{os.getpid()}-{uuid.uuid4().hex}"
        self.fs.pipe_file(tmp, data)
        self.fs.makedirs(path.rpartition("/")[0], exist_ok=True)
        self.fs.mv(tmp, path)

    def __reduce__(self) -> tuple[Any, ...]:  # workers reopen the store from its URL
        return (FsspecBlobStore, (self.root,))
