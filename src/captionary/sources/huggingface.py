"""`load_hf`: a Hugging Face dataset (a hub name, or a local folder from `save_to_disk` or one that
`datasets.load_dataset` reads), one item per row; the other columns become properties."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from captionary.core import optional
from captionary.pipeline.context import SourceContext
from captionary.pipeline.step import Ingested, Source, require
from captionary.sources.records import SourceRecords, chunks, should_verify


class LoadHuggingFace(Source):
    """Load a Hugging Face dataset split: its image column becomes the item, other columns properties."""

    name: ClassVar[str] = "load_hf"

    dataset: str
    split: str = "train"
    image_column: str = "image"
    caption_column: str = "caption"
    revision: str | None = None
    verify: bool | None = None

    def validate(self) -> None:
        optional.require("datasets", "huggingface")
        require(bool(self.dataset), self, "name a dataset (hub id or local folder)", param="dataset")

    def scan(self, ctx: SourceContext) -> Iterator[Ingested]:
        from datasets import Image as ImageFeature

        ds = self._open()
        if self.image_column not in ds.column_names:
            yield Ingested(
                self.dataset,
                error=f"{self.dataset}: no column {self.image_column!r} "
                f"(columns: {', '.join(ds.column_names)}; set image_column:)",
            )
            return
        if isinstance(ds.features[self.image_column], ImageFeature):
            ds = ds.cast_column(self.image_column, ImageFeature(decode=False))
        verify = should_verify(self.verify, ctx)
        prefix = f"hf:{self.dataset}:{self.split}#"
        records = SourceRecords(ctx, prefix, verify)
        ctx.expect(len(ds))
        fresh = []
        for index in range(len(ds)):  # known rows of an unchanged dataset are not even read
            key, name = f"{prefix}{index:09d}", f"{self.split}/{index:06d}"
            known = records.cached(key, name, ds._fingerprint)
            if known is not None:
                yield known
            else:
                fresh.append(index)
        for chunk in chunks(zip(fresh, ds.select(fresh)), size_of=self._image_size):
            with records.batch():  # the chunk's small images stored in one transaction
                done = [self._ingest(records, prefix, index, row, ds._fingerprint) for index, row in chunk]
            yield from done

    def _open(self):
        import datasets

        local = Path(self.dataset).expanduser()
        if local.is_dir() and (
            (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
        ):
            ds = datasets.load_from_disk(str(local))
            return ds[self.split] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(self.dataset, split=self.split, revision=self.revision)

    def _ingest(
        self, records: SourceRecords, prefix: str, index: int, row: dict, fingerprint: str
    ) -> Ingested:
        key, name = f"{prefix}{index:09d}", f"{self.split}/{index:06d}"
        image = row.pop(self.image_column)
        data = image.get("bytes") if isinstance(image, dict) else None
        if data is None and isinstance(image, dict) and image.get("path"):
            return self._from_path(records, key, image["path"], name, fingerprint, row)
        if data is None:
            return Ingested(key, error=f"{self.dataset} row {index}: no image bytes or path")
        props = self._props(row)
        record = records.ingest_bytes(key, data, f"row {index}", name, fingerprint, props)
        return record if record.item is None else records.unique(record.item, cached=False)

    def _image_size(self, entry: tuple[int, dict]) -> int:
        image = entry[1].get(self.image_column)
        data = image.get("bytes") if isinstance(image, dict) else None
        return len(data) if isinstance(data, bytes) else 0

    def _from_path(self, records, key, path, name, fingerprint, row) -> Ingested:
        record = records.ingest(key, path, name, fingerprint, self._props(row))
        return record if record.item is None else records.unique(record.item, cached=False)

    def _props(self, row: dict[str, Any]) -> dict[str, Any]:
        props = {k: v for k, v in row.items() if v is not None}
        if self.caption_column != "caption" and self.caption_column in props:
            props["caption"] = props.pop(self.caption_column)
        return props
