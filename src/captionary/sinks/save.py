"""`save`: write the dataset a trainer reads, in one of the formats of `sinks/formats/`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from captionary.core import engines
from captionary.core.engines import EngineName
from captionary.core.item import Item
from captionary.pipeline.context import SinkContext
from captionary.pipeline.step import Sink, require
from captionary.sinks.encoding import ImageEncoding
from captionary.sinks.formats import FORMATS, ExportFormat
from captionary.sinks.formats.base import WriteResult


class Save(Sink):
    """Write the dataset a trainer reads: kohya, kohya_json, imagefolder, jsonl, parquet or webdataset.

    kohya:        out/dog/00.jpg + out/dog/00.txt (caption_ext) [+ out/dog/00.json, json_sidecar]
    imagefolder:  out/train/dog/00.jpg + out/train/metadata.jsonl ({"file_name", caption_column, ...})
    jsonl:        out/dog/00.jpg + out/metadata.jsonl ({"image_path", "caption", ...})
    kohya_json:   out/dog_00.jpg (flat, as kohya's fine-tuning reads them) + out.json beside the
                  folder: {"dog_00": {"caption": ..., "tags": "a, b"}} (kohya's --in_json)
    parquet:      out/dog/00.jpg + out/data.parquet (image_path, caption, properties as columns;
                  embed_images: an `image` column with the file bytes too). Needs pyarrow.
    webdataset:   out/shard-000000.tar, ... of `shard_size` samples each: dog/00.jpg, dog/00.txt,
                  dog/00.json (all properties), written as items arrive (see sinks/shards.py)
    Unchanged files are not rewritten; files the sink did not write are never touched; a file it wrote
    that changed since is left as it is and reported (`overwrite_edited` replaces it). Every image is
    written upright (EXIF orientation applied to the pixels). `missing_caption` (empty | skip | fail)
    says what happens to items without a caption; the run summary counts them. kohya: `repeats` (a
    number or {folder: number}) writes kohya's `N_folder/` DreamBooth folders, `folder` one given folder
    (e.g. `reg/1_dog` for class images). parquet: `max_shard_mb` per `data/train-*.parquet` shard.
    `license` goes into the dataset card (README.md) written beside Hub-ready exports.
    `engine` (auto | pillow | vips) is the library that encodes images (auto: the one that made them).
    `threads` encode the images no image step's worker encoded already, and copy originals over 1 MP;
    files whose bytes are in hand (encoded in the process pool, captions, small originals) are written
    by one thread, 8 items per task.
    """

    name: ClassVar[str] = "save"

    path: Path
    format: Literal["kohya", "kohya_json", "imagefolder", "jsonl", "parquet", "webdataset"] = "kohya"
    caption_ext: str = ".txt"
    caption_property: str = "caption"
    caption_column: str = "text"
    naming: Literal["source", "id", "sequential"] = "source"
    json_sidecar: bool = False
    embed_images: bool = False
    image_format: Literal["original", "jpg", "png", "webp"] = "original"
    quality: int = 95
    threads: int = 4
    shard_size: int = 1000
    missing_caption: Literal["empty", "skip", "fail"] = "empty"
    repeats: int | dict[str, int] | None = None
    folder: str | None = None
    max_shard_mb: int = 500
    license: str | None = None
    overwrite_edited: bool = False
    engine: EngineName = "auto"

    def validate(self) -> None:
        require(
            self.caption_ext.startswith(".") and len(self.caption_ext) > 1,
            self,
            f"must start with a dot, like '.txt' or '.caption'; got {self.caption_ext!r}",
            param="caption_ext",
        )
        require(1 <= self.quality <= 100, self, f"must be within 1..100; got {self.quality}", param="quality")
        require(
            self.caption_ext != ".json" or not self.json_sidecar,
            self,
            "'.json' is taken by the properties file",
            param="caption_ext",
        )
        require(self.threads >= 1, self, "must be at least 1", param="threads")
        require(self.shard_size >= 1, self, "must be at least 1", param="shard_size")
        require(self.max_shard_mb >= 1, self, "must be at least 1", param="max_shard_mb")
        require(
            (self.repeats is None and self.folder is None) or self.format == "kohya",
            self,
            "only for format: kohya",
            param="repeats" if self.repeats is not None else "folder",
        )
        require(
            not self.embed_images or self.format == "parquet",
            self,
            "only for format: parquet",
            param="embed_images",
        )
        engines.check(self.engine, f"{self.name}.engine")
        FORMATS[self.format].validate(self)

    def open(self, ctx: SinkContext) -> None:
        self.exporter: ExportFormat = FORMATS[self.format](self)
        self.exporter.open(ctx)

    def write(self, items: Sequence[Item]) -> list[WriteResult]:
        return self.exporter.write(items)

    def close(self, complete: bool) -> None:
        self.exporter.close(complete)

    def usage(self) -> dict[str, int]:
        return self.exporter.usage()

    def renderer(self) -> ImageEncoding:
        return ImageEncoding(self.image_format, self.quality, engines.resolve(self.engine))
