"""Readers: every format captionary exports (and a few more) as a list of `Record`s.

`detect_format(source)` names the format; `READERS[format](source, **options)` reads it. WebDataset
shards are streamed instead (`captionary.loader.webdataset`).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from captionary.core.locations import is_fsspec_url, is_http
from captionary.errors import ConfigError
from captionary.loader.readers.folder import read_files, read_folder
from captionary.loader.readers.huggingface import read_huggingface
from captionary.loader.readers.manifests import (
    ManifestError,
    read_csv,
    read_imagefolder,
    read_jsonl,
    read_kohya_json,
    read_parquet,
    read_tsv,
)
from captionary.loader.readers.workspace import read_workspace
from captionary.loader.records import Record

READERS: dict[str, Callable[..., list[Record]]] = {
    "kohya": read_folder,
    "kohya_json": read_kohya_json,
    "imagefolder": read_imagefolder,
    "jsonl": read_jsonl,
    "csv": read_csv,
    "tsv": read_tsv,
    "parquet": read_parquet,
    "workspace": read_workspace,
    "huggingface": read_huggingface,
    "files": read_files,
}
FORMATS = (*READERS, "webdataset")
OPTIONS = ("image_column", "caption_column", "caption_ext", "image_dir", "split", "delimiter")
SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".json": "kohya_json",
    ".tar": "webdataset",
}


def is_pattern(source: str) -> bool:
    return any(c in source for c in "*?[{")


def detect_format(source: Any) -> str:
    """The format of a folder, file, glob or URL (or a `datasets.Dataset`), from what it contains."""
    if not isinstance(source, (str, Path)):
        return "huggingface"
    text = str(source)
    if (
        is_http(text)
        or text.startswith("pipe:")
        or ((is_pattern(text) or is_fsspec_url(text)) and ".tar" in text)
    ):
        return "webdataset"
    if is_pattern(text):
        return "files"
    path = Path(text)
    if path.is_file():
        fmt = SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise ConfigError(
                f"{path}: cannot tell the format from {path.suffix!r}; pass format= ({_names()})"
            )
        return fmt
    if not path.is_dir():
        raise ConfigError(f"dataset not found: {path}")
    names = set(os.listdir(path))
    if "captionary.db" in names:
        return "workspace"
    if "dataset_info.json" in names or "dataset_dict.json" in names or "state.json" in names:
        return "huggingface"
    for manifest in (path / "metadata.jsonl", path / "train" / "metadata.jsonl"):
        if manifest.is_file():
            with open(manifest, encoding="utf-8") as f:
                first = f.readline()
            return "imagefolder" if '"file_name"' in first and '"image_path"' not in first else "jsonl"
    if "data.parquet" in names or any((path / "data").glob("train-*.parquet")):
        return "parquet"
    if any(name.endswith(".tar") for name in names):
        return "webdataset"
    if path.with_suffix(".json").is_file() and not any((path / n).is_dir() for n in names):
        return "kohya_json"
    return "kohya"


def read_records(source: Any, format: str | None = None, **options: Any) -> list[Record]:
    """Every record of `source`, in a stable order. Errors name the file and line."""
    fmt = format or detect_format(source)
    if fmt not in READERS:
        raise ConfigError(f"unknown format {fmt!r}; valid: {_names()}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; readers take {', '.join(OPTIONS)}")
    if fmt == "files":
        return read_files(glob.glob(str(source), recursive=True))
    if fmt != "huggingface":
        source = _resolve(Path(source), fmt)
    try:
        return READERS[fmt](source, **options)
    except ManifestError as exc:
        raise ConfigError(str(exc)) from None


def _resolve(path: Path, fmt: str) -> Path:
    """A folder stands for its manifest: metadata.jsonl, data.parquet, or (kohya_json) DIR.json; a
    folder of Hub-layout Parquet shards (`data/train-*.parquet`) is read as it is."""
    if path.is_dir():
        if fmt == "jsonl":
            return path / "metadata.jsonl"
        if fmt == "parquet" and (path / "data.parquet").is_file():
            return path / "data.parquet"
        if fmt == "kohya_json":
            return path.with_suffix(".json")
        if fmt in ("csv", "tsv"):
            raise ConfigError(f"{path}: a {fmt} manifest is a file; pass its path")
    return path


def _names() -> str:
    return ", ".join(FORMATS)
