"""Manifest formats: JSONL / imagefolder `metadata.jsonl`, kohya JSON, CSV / TSV, Parquet.

Relative image paths resolve against the manifest's folder; URLs are kept (downloaded later, once).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from captionary.core.locations import is_http
from captionary.core.manifest_rows import Row, csv_rows, jsonl_rows
from captionary.loader.records import Record, captions_of

IMAGE_COLUMNS = ("image_path", "file_name", "image", "path", "url", "image_url")
CAPTION_COLUMNS = ("caption", "text", "captions", "prompt")


class ManifestError(ValueError):
    """A manifest row that cannot be used; the message names the file and line."""


def read_jsonl(path: Path, **options: Any) -> list[Record]:
    return _records(path, _usable(jsonl_rows(path, str(path))), **options)


def read_csv(path: Path, *, delimiter: str | None = None, **options: Any) -> list[Record]:
    delimiter = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    return _records(path, _usable(csv_rows(path, str(path), delimiter)), **options)


def read_tsv(path: Path, **options: Any) -> list[Record]:
    return read_csv(path, delimiter="\t", **options)


def read_parquet(path: Path, **options: Any) -> list[Record]:
    from captionary.core.optional import require

    pq = require("pyarrow.parquet", "parquet", package="pyarrow")
    if path.is_dir():  # the Hub's layout: data/train-0000N-of-0000M.parquet, image paths relative to path
        shards = sorted((path / "data").glob("train-*.parquet"))
        if not shards:
            raise ManifestError(f"{path}: no data.parquet and no data/train-*.parquet")
        rows = (
            (f"{shard.name} row {n}", row)
            for shard in shards
            for n, row in enumerate(pq.read_table(shard).to_pylist(), 1)
        )
        return _records(path / "data.parquet", rows, **options)
    rows = pq.read_table(path).to_pylist()
    return _records(path, ((f"{path.name} row {n}", row) for n, row in enumerate(rows, 1)), **options)


def read_imagefolder(root: Path, **options: Any) -> list[Record]:
    """A Hugging Face imagefolder: `metadata.jsonl` (`file_name` + caption) in `root` or `root/train`."""
    for candidate in (root / "metadata.jsonl", root / "train" / "metadata.jsonl"):
        if candidate.is_file():
            return read_jsonl(candidate, **options)
    raise ManifestError(f"{root}: no metadata.jsonl (looked in {root} and {root / 'train'})")


def read_kohya_json(path: Path, *, image_dir: str | Path | None = None, **_: Any) -> list[Record]:
    """kohya's `--in_json` metadata: {"key": {"caption": ..., "tags": ...}}; images are `image_dir/key.*`
    (default: the folder named like the JSON file beside it, as captionary's export writes it)."""
    from captionary.loader.readers.folder import image_extensions

    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(table, dict):
        raise ManifestError(f"{path}: kohya metadata is a JSON object keyed by image name")
    folder = Path(image_dir) if image_dir else path.with_suffix("")
    files = {}
    if folder.is_dir():
        extensions = image_extensions()
        files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in extensions}
    records = []
    for key, entry in table.items():
        image = files.get(key) or (Path(key) if Path(key).is_file() else None)
        if image is None:
            raise ManifestError(f"{path}: entry {key!r}: no image named {key}.* in {folder}")
        entry = entry if isinstance(entry, dict) else {}
        captions = captions_of(entry.get("caption"))
        if not captions and entry.get("tags"):
            captions = captions_of(entry["tags"])
        # kohya's `train_resolution` is the bucket, not the image size: the header is read instead
        records.append(Record(key, str(image), captions, None, f"{path}: {key}", entry))
    return records


def _records(
    manifest: Path,
    rows: Iterator[tuple[str, dict[str, Any]]],
    *,
    image_column: str | None = None,
    caption_column: str | None = None,
    **_: Any,
) -> list[Record]:
    base = manifest.parent
    records = []
    for where, row in rows:
        image_key = image_column or _image_column(row)
        if image_key is None or row.get(image_key) in (None, ""):
            raise ManifestError(
                f"{where}: no image in column {image_column or ' / '.join(IMAGE_COLUMNS)} "
                f"(columns: {', '.join(map(str, row))}; pass image_column=)"
            )
        caption_key = caption_column or next((c for c in CAPTION_COLUMNS if c in row), None)
        captions = captions_of(row.get(caption_key)) if caption_key else ()
        image, sample_id = _image(base, row, image_key, where)
        props = {
            k: v for k, v in row.items() if k not in (image_key, caption_key) and not isinstance(v, bytes)
        }
        size = (row["width"], row["height"]) if isinstance(image, str) and _sized(row) else None
        records.append(Record(sample_id, image, captions, size, where, props))
    return records


def _image_column(row: dict[str, Any]) -> str | None:
    """Embedded bytes first (they travel with the file), then the first path-like column."""
    embedded = row.get("image")
    if isinstance(embedded, bytes) or (isinstance(embedded, dict) and embedded.get("bytes")):
        return "image"
    return next((c for c in IMAGE_COLUMNS if row.get(c) not in (None, "")), None)


def _sized(row: dict[str, Any]) -> bool:
    return isinstance(row.get("width"), int) and isinstance(row.get("height"), int)


def _image(base: Path, row: dict[str, Any], column: str, where: str) -> tuple[str | bytes, str]:
    """The image (path, URL or bytes) and a stable sample id."""
    value = row[column]
    if isinstance(value, dict):  # Hugging Face / Parquet image struct {"bytes": ..., "path": ...}
        if value.get("bytes"):
            name = value.get("path") or row.get("image_path") or row.get("file_name")
            return value["bytes"], _stem(name) if name else hashlib.sha256(value["bytes"]).hexdigest()[:16]
        value = value.get("path")
    if isinstance(value, bytes):
        name = row.get("image_path") or row.get("file_name")
        return value, _stem(name) if name else hashlib.sha256(value).hexdigest()[:16]
    if not isinstance(value, str):
        raise ManifestError(f"{where}: column {column!r} is {type(value).__name__}, not a path, URL or bytes")
    if is_http(value):
        return value, value
    path = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    if not os.path.isfile(path):
        raise ManifestError(f"{where}: image not found: {path}")
    return path, _stem(os.path.relpath(path, base))


def _stem(name: str) -> str:
    return name.replace(os.sep, "/").rpartition(".")[0] or name


def _usable(rows: Iterator[tuple[str, Row]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows, stopping at the first unusable line with its reason."""
    for where, row in rows:
        if isinstance(row, str):
            raise ManifestError(f"{where}: {row}")
        yield where, row
