"""parquet: `out/dog/00.jpg` + `out/data.parquet` (image_path, caption, properties as columns;
`embed_images`: an `image` column with the file bytes too). Needs pyarrow."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core import optional
from captionary.sinks.formats.jsonl import Jsonl


class Parquet(Jsonl):
    name: ClassVar[str] = "parquet"

    @classmethod
    def validate(cls, save: Any) -> None:
        optional.require("pyarrow.parquet", "parquet", package="pyarrow")

    def manifests(self, rows: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.save.embed_images:
            rows = [{**row, "image": (self.files.root / row["image_path"]).read_bytes()} for row in rows]
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        return [("data.parquet", buffer.getvalue().to_pybytes())]
