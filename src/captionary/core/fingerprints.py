"""Cheap, stable identities of model files for cache keys: a retrained model in the same place
recomputes, a moved one does not."""

from __future__ import annotations

import hashlib
from pathlib import Path

_SAMPLE = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".json", ".dat", ".npz")


def file_fingerprint(path: Path) -> str:
    """Size + the first and last MiB, hashed: cheap for a 1 GB model, and stable when moved."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=12)
    with path.open("rb") as f:
        digest.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(_SAMPLE, size - _SAMPLE))
            digest.update(f.read())
    return digest.hexdigest()


def model_fingerprint(model: str | Path, revision: str | None = None) -> str:
    """A cache identity for a model: its files' fingerprints for a local file or folder, else
    `hub id@revision`."""
    path = Path(model)
    if path.is_file():
        return f"file:{file_fingerprint(path)}"
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        digest = hashlib.blake2b(digest_size=12)
        for file in files:
            digest.update(f"{file.relative_to(path).as_posix()}={file_fingerprint(file)};".encode())
        return f"dir:{digest.hexdigest()}"
    return f"hub:{model}@{revision or 'main'}"
