"""Content-addressed blob store: `objects/ab/<sha256>`, written atomically (temp file + rename)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from captionary.core.atomic import remove_temp_files, write_atomic
from captionary.core.hashing import hash_bytes


class BlobStore:
    """Immutable bytes named by their sha256. Writing the same bytes twice stores them once."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.tmp_str = str(self.tmp)
        self._folders: set[str] = set()  # fan-out folders known to exist (saves a mkdir per blob)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def __contains__(self, digest: str) -> bool:
        return self.path(digest).exists()

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store bytes (a copy: nothing is ever linked) and return their sha256."""
        digest = digest or hash_bytes(data)
        target = self.path(digest)
        if not target.exists():
            folder = digest[:2]
            if folder not in self._folders:
                target.parent.mkdir(exist_ok=True)
                self._folders.add(folder)
            write_atomic(str(target), data, self.tmp_str)
        return digest

    def digests(self) -> Iterator[str]:
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) == 2 and folder.is_dir():
                yield from (blob.name for blob in folder.iterdir())

    def delete(self, digest: str) -> int:
        path = self.path(digest)
        size = path.stat().st_size
        path.unlink()
        return size

    def clear_tmp(self) -> None:
        """Remove temp files left by a killed process."""
        remove_temp_files(self.tmp_str)
