"""Export formats of `save`, one module each, by name (`FORMATS`)."""

from __future__ import annotations

from captionary.sinks.formats.base import ExportFormat
from captionary.sinks.formats.imagefolder import ImageFolder
from captionary.sinks.formats.jsonl import Jsonl
from captionary.sinks.formats.kohya import Kohya
from captionary.sinks.formats.kohya_json import KohyaJson
from captionary.sinks.formats.parquet import Parquet
from captionary.sinks.formats.webdataset import WebDataset

FORMATS: dict[str, type[ExportFormat]] = {
    f.name: f for f in (Kohya, KohyaJson, ImageFolder, Jsonl, Parquet, WebDataset)
}
"""format name -> its class; `save`'s `format` parameter lists the same names."""

__all__ = ["FORMATS", "ExportFormat"]
