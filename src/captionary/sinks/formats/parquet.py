"""parquet: the Hugging Face Hub's layout, `out/data/train-00000-of-0000N.parquet` (shards of at most
`max_shard_mb`), one row per image: `image_path`, `caption`, the properties as columns.

`embed_images`: an `image` column in the `datasets` Image feature's layout (a struct of `bytes` and
`path`, declared in the schema's `huggingface` metadata), so `load_dataset(out)` gives PIL images and the
folder can be uploaded as it is; the image files themselves are kept in `out/.images/` (hidden from
`datasets` and from `captionary push`) so a re-run rewrites only what changed. Without it, the images
sit beside `data/` and `image_path` is relative to `out/`. Needs pyarrow."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, ClassVar

from captionary.core import optional
from captionary.core.item import Item
from captionary.pipeline.context import SinkContext
from captionary.sinks.formats.base import FileExport, properties_row

STAGED = ".images/"
HF_FEATURES = json.dumps({"info": {"features": {"image": {"_type": "Image"}}}})
ROW_OVERHEAD = 256  # bytes a row's text columns take, roughly, when sizing shards


class Parquet(FileExport):
    name: ClassVar[str] = "parquet"

    @classmethod
    def validate(cls, save: Any) -> None:
        optional.require("pyarrow.parquet", "parquet", package="pyarrow")

    def open(self, ctx: SinkContext) -> None:
        self.image_folder = STAGED if self.save.embed_images else ""  # type: ignore[misc]
        super().open(ctx)

    def row(self, item: Item, image_path: str | None, caption: Any) -> dict[str, Any]:
        props = properties_row(item, self.save.caption_property)
        name = (image_path or "").removeprefix(self.image_folder)
        return {**props, "image_path": name, "caption": caption, "_file": image_path}

    def manifests(self, rows: list[dict[str, Any]]) -> Iterator[tuple[str, bytes]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = [row.pop("_file") for row in rows]
        table = pa.Table.from_pylist(rows) if rows else pa.table({"image_path": pa.array([], pa.string())})
        image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        shards = self._shards(files)
        for index, (start, stop) in enumerate(shards):
            part = table.slice(start, stop - start)
            if self.save.embed_images:
                images = [
                    {"bytes": (self.files.root / f).read_bytes(), "path": f.removeprefix(STAGED)}
                    for f in files[start:stop]
                ]
                part = part.add_column(0, pa.field("image", image_type), pa.array(images, image_type))
                part = part.replace_schema_metadata({"huggingface": HF_FEATURES})
            buffer = pa.BufferOutputStream()
            pq.write_table(part, buffer, row_group_size=100 if self.save.embed_images else None)
            yield f"data/train-{index:05d}-of-{len(shards):05d}.parquet", buffer.getvalue().to_pybytes()

    def _shards(self, files: list[str]) -> list[tuple[int, int]]:
        """Row ranges of at most `max_shard_mb` each (by the image files' sizes when embedded)."""
        limit = self.save.max_shard_mb * 1_000_000
        shards: list[tuple[int, int]] = []
        start, size = 0, 0
        for index, file in enumerate(files):
            row_size = ROW_OVERHEAD + (
                os.stat(self.files.root / file).st_size if self.save.embed_images else 0
            )
            if index > start and size + row_size > limit:
                shards.append((start, index))
                start, size = index, 0
            size += row_size
        shards.append((start, len(files)))
        return shards
