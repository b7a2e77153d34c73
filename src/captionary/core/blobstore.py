"""Content-addressed blob store: `objects/ab/cd/<sha256>`, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from captionary.core.hashing import hash_bytes, hash_file


class BlobStore:
    """Immutable bytes named by their sha256. Writing the same bytes twice stores them once."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / digest

    def __contains__(self, digest: str) -> bool:
        return self.path(digest).exists()

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def put(self, data: bytes) -> str:
        digest = hash_bytes(data)
        target = self.path(digest)
        if not target.exists():
            self._commit(target, lambda f: f.write(data))
        return digest

    def put_file(self, source: str | Path, digest: str | None = None) -> str:
        """Copy a file into the store (the source is never linked or modified)."""
        digest = digest or hash_file(source)
        target = self.path(digest)
        if not target.exists():
            with open(source, "rb") as src:
                self._commit(target, lambda f: shutil.copyfileobj(src, f, 1 << 20))
        return digest

    def _commit(self, target: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def digests(self) -> Iterator[str]:
        for first in sorted(self.root.iterdir()):
            if len(first.name) != 2 or not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for blob in second.iterdir():
                    yield blob.name

    def delete(self, digest: str) -> int:
        path = self.path(digest)
        size = path.stat().st_size
        path.unlink()
        return size

    def clear_tmp(self) -> None:
        """Remove temp files left by a killed process."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
