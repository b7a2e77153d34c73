"""Content-addressed blob store: `objects/ab/<sha256>`, written atomically (temp file + rename).

A blob may also be a reference, `objects/ab/<sha256>.ref` (JSON naming a byte range of a file or
URL, see core/locations.py): huge sources are read where they are instead of copied.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from captionary.core.atomic import read_file, remove_temp_files, write_atomic
from captionary.core.blobpack import PACK_LIMIT, PACK_NAME, BlobPack
from captionary.core.hashing import hash_bytes
from captionary.core.locations import Location, read_location

REF_SUFFIX = ".ref"


class BlobStore:
    """Immutable bytes named by their sha256. Writing the same bytes twice stores them once."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root_str = str(self.root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.tmp_str = str(self.tmp)
        self._folders: set[str] = set()  # fan-out folders known to exist (saves a mkdir per blob)
        self.pack = BlobPack(str(self.root / PACK_NAME))

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def __contains__(self, digest: str) -> bool:
        path = self.path(digest)
        return digest in self.pack or path.exists() or path.with_name(digest + REF_SUFFIX).exists()

    def get(self, digest: str) -> bytes:
        packed = self.pack.get(digest)
        if packed is not None:
            return packed
        path = self.path(digest)
        try:
            return read_file(str(path))
        except FileNotFoundError:
            try:
                location = json.loads(path.with_name(digest + REF_SUFFIX).read_bytes())
            except FileNotFoundError:
                raise FileNotFoundError(f"blob {digest} is not in {self.root}") from None
        return read_location(location, digest)

    def put_reference(self, digest: str, location: Location) -> str:
        """Record where the bytes of `digest` live instead of copying them (a stored copy wins)."""
        target = self.path(digest)
        if not target.exists():
            self._folder(digest)
            data = json.dumps(location, sort_keys=True).encode()
            write_atomic(str(target.with_name(digest + REF_SUFFIX)), data, self.tmp_str)
        return digest

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store bytes (a copy: nothing is ever linked) and return their sha256: packed when small
        (committed when this returns, or inside `batch()` when the batch ends), else a file."""
        digest = digest or hash_bytes(data)
        target = f"{self.root_str}/{digest[:2]}/{digest}"  # strings: a Path costs ~5 us a blob here
        try:
            os.stat(target)  # stored as a file already (a workspace from before the pack)
        except FileNotFoundError:
            if len(data) <= PACK_LIMIT:
                self.pack.put(digest, data)
            else:
                self._folder(digest)
                write_atomic(target, data, self.tmp_str, stat=False)
        return digest

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Within the block, this thread's small blobs are committed together when it ends: readers in
        this process see them at once, other processes after the block (hand them nothing before)."""
        return self.pack.batch()

    def _folder(self, digest: str) -> None:
        folder = digest[:2]
        if folder not in self._folders:
            (self.root / folder).mkdir(exist_ok=True)
            self._folders.add(folder)

    def digests(self) -> Iterator[str]:
        """Every blob's digest (a blob both packed and a file, or a file and a reference: once)."""
        found = set(self.pack.digests())
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) == 2 and folder.is_dir():
                found.update(blob.name.removesuffix(REF_SUFFIX) for blob in folder.iterdir())
        yield from sorted(found)

    def delete(self, digest: str) -> int:
        """Delete a blob (and any reference to it); the bytes freed in the workspace."""
        return self.delete_many([digest])

    def delete_many(self, digests: Iterable[str]) -> int:
        """Delete blobs (and any references to them), the packed ones in one transaction of the
        pack; the bytes freed in the workspace."""
        digests = list(digests)
        freed = self.pack.delete_many(digests)
        for digest in digests:
            for path in (self.path(digest), self.path(digest).with_name(digest + REF_SUFFIX)):
                try:
                    freed += path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    pass
        return freed

    def clear_tmp(self) -> None:
        """Remove temp files left by a killed process."""
        remove_temp_files(self.tmp_str)

    def compact(self) -> None:
        """After deletions: give the pack's free pages back to the file system when they are many."""
        self.pack.compact()

    def close(self) -> None:
        self.pack.close()

    def __reduce__(self) -> tuple[Any, ...]:  # a copy in another process opens the pack itself
        return (BlobStore, (self.root,))


BLOBS_URL_FILE = "blobs.url"
"""A workspace whose blobs live elsewhere (an fsspec URL) names the place in this file."""


def open_blob_store(location: str | Path) -> BlobStore | Any:
    """The blob store at a folder path, or at an fsspec URL (`s3://...`, `file:///...`)."""
    if isinstance(location, str) and "://" in location:
        from captionary.core.fsspec_blobs import FsspecBlobStore

        return FsspecBlobStore(location)
    return BlobStore(location)


def workspace_blob_store(workspace: str | Path) -> BlobStore | Any:
    """The blob store of the workspace folder `workspace`: `objects/`, or the URL in `blobs.url`."""
    url_file = Path(workspace) / BLOBS_URL_FILE
    if url_file.is_file():
        return open_blob_store(url_file.read_text().strip())
    return BlobStore(Path(workspace) / "objects")
