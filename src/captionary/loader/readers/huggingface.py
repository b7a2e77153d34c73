"""Hugging Face datasets: a `datasets.Dataset` object or a folder written by `save_to_disk`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from captionary.loader.readers.manifests import CAPTION_COLUMNS, ManifestError
from captionary.loader.records import Record, captions_of


def read_huggingface(
    source: Any,
    *,
    image_column: str = "image",
    caption_column: str | None = None,
    split: str = "train",
    **_: Any,
) -> list[Record]:
    from captionary.core.optional import require

    datasets = require("datasets", "huggingface")
    dataset = source
    if isinstance(source, (str, Path)):
        dataset = datasets.load_from_disk(str(source))
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset[split]
    if image_column not in dataset.column_names:
        raise ManifestError(f"{source}: no image column {image_column!r} (columns: {dataset.column_names})")
    caption_key = caption_column or next((c for c in CAPTION_COLUMNS if c in dataset.column_names), None)
    if isinstance(dataset.features[image_column], datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
    records = []
    for number, row in enumerate(dataset):
        value = row[image_column]
        data = value.get("bytes") if isinstance(value, dict) else value
        if not data and isinstance(value, dict) and value.get("path"):
            data = Path(value["path"]).read_bytes()
        if not isinstance(data, bytes):
            raise ManifestError(f"{source} row {number}: column {image_column!r} holds no image bytes")
        name = value.get("path") if isinstance(value, dict) else None
        sample_id = f"{number:08d}-{Path(name).stem}" if name else f"{number:08d}"
        props = {k: v for k, v in row.items() if k not in (image_column, caption_key)}
        records.append(
            Record(sample_id, data, captions_of(row.get(caption_key)), None, f"row {number}", props)
        )
    return records
