"""`save`: write the dataset a trainer reads (kohya, imagefolder, jsonl, parquet, webdataset)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from captionary.core import optional
from captionary.core.hashing import canonical_json, hash_bytes
from captionary.core.images import FORMAT_EXTENSIONS
from captionary.core.item import Item
from captionary.executors.worker import describe_error
from captionary.pipeline.step import Sink, require
from captionary.sinks.files import NotOurs, OutputFiles
from captionary.sinks.shards import Member, ShardWriter, sample_key

PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


MANIFESTS = {
    "imagefolder": ("train/", "train/metadata.jsonl"),
    "jsonl": ("", "metadata.jsonl"),
    "parquet": ("", "data.parquet"),
    "kohya_json": ("", "../{folder}.json"),
}
"""format -> (folder of the images, the manifest file), for formats with one manifest of all items."""


class Save(Sink):
    """Write the dataset: `kohya` (image + caption file), `imagefolder` or `jsonl` (images + manifest).

    kohya:        out/dog/00.jpg + out/dog/00.txt (caption_ext) [+ out/dog/00.json, json_sidecar]
    imagefolder:  out/train/dog/00.jpg + out/train/metadata.jsonl ({"file_name", caption_column, ...})
    jsonl:        out/dog/00.jpg + out/metadata.jsonl ({"image_path", "caption", ...})
    kohya_json:   out/dog_00.jpg (flat, as kohya's fine-tuning reads them) + out.json beside the
                  folder: {"dog_00": {"caption": ..., "tags": "a, b"}} (kohya's --in_json)
    parquet:      out/dog/00.jpg + out/data.parquet (image_path, caption, properties as columns;
                  embed_images: an `image` column with the file bytes too). Needs pyarrow.
    webdataset:   out/shard-000000.tar, ... of `shard_size` samples each: dog/00.jpg, dog/00.txt,
                  dog/00.json (all properties), written as items arrive (see sinks/shards.py)
    Unchanged files are not rewritten; files the sink did not write are never touched.
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

    def validate(self) -> None:
        require(
            self.caption_ext.startswith(".") and len(self.caption_ext) > 1,
            self,
            f"must start with a dot, like '.txt' or '.caption'; got {self.caption_ext!r}",
            param="caption_ext",
        )
        require(1 <= self.quality <= 100, self, f"must be within 1..100; got {self.quality}", param="quality")
        require(
            self.caption_ext != ".json" or not (self.json_sidecar or self.format == "webdataset"),
            self,
            "'.json' is taken by the properties file",
            param="caption_ext",
        )
        require(self.threads >= 1, self, "must be at least 1", param="threads")
        require(self.shard_size >= 1, self, "must be at least 1", param="shard_size")
        require(
            not self.embed_images or self.format == "parquet",
            self,
            "only for format: parquet",
            param="embed_images",
        )
        if self.format == "parquet":
            optional.require("pyarrow.parquet", "parquet", package="pyarrow")

    def open(self, ctx: Any) -> None:
        self.ctx = ctx
        root = self.path.resolve()
        if self.format == "webdataset":
            self.shards = ShardWriter(ctx, f"{root}::{self.format}", root, self.shard_size)
            self.claims = self.shards.claimed_keys()
        else:
            self.files = OutputFiles(ctx, f"{root}::{self.format}", root)
            self.claims = self.files.claimed_names()
        self.stem_of = {item: stem for stem, item in self.claims.items()}
        numbers = [int(stem) for stem in self.claims if stem.isdigit()]
        self.next_number = max(numbers, default=-1) + 1
        self.encoding = self.renderer()
        self.rows: dict[str, dict[str, Any]] = {}  # manifest rows by image path
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="captionary-save")

    def write(self, items: Sequence[Item]) -> list[bool | str | Future]:
        """Plan each item's files; those already on disk as planned cost a stat, the rest go to threads."""
        if self.format == "webdataset":
            return [self._write_sample(item) for item in items]
        results: list[bool | str | Future] = []
        for item in items:
            try:
                planned = self._plan(item, self._stem(item))
            except Exception as exc:
                results.append(describe_error(exc))
                continue
            todo = [f for f in planned if not self.files.unchanged(f.relative, f.digest)]
            results.append(self.pool.submit(self._write_files, item, todo) if todo else False)
        return results

    def close(self, complete: bool) -> None:
        self.pool.shutdown()
        if self.format == "webdataset":
            self.shards.close(complete, keep_items={e["item"] for e in self.ctx.errors if e["item"]})
            return
        if complete and self.format in MANIFESTS:
            manifest = MANIFESTS[self.format][1].format(folder=self.files.root.name)
            self.files.write(manifest, None, *self._manifest())
        if complete:
            failed = {e["item"] for e in self.ctx.errors if e["item"]}
            self.files.remove_stale(failed)

    def _stem(self, item: Item) -> str:
        """The output name: the source's relative name (made unique if another item holds it), the
        item id, or a number given at first sight that stays with the image in later runs."""
        if self.naming == "id":
            return item.id[:16]
        if self.format == "kohya_json" and self.naming == "source":  # kohya keys images by file stem
            flat = item.name.replace("/", "_")
            owner = self.claims.setdefault(flat, item.id)
            return flat if owner == item.id else f"{flat}-{item.id[:8]}"
        if self.naming == "sequential":
            if item.id not in self.stem_of:
                self.stem_of[item.id] = f"{self.next_number:06d}"
                self.next_number += 1
            return self.stem_of[item.id]
        name = sample_key(item.name) if self.format == "webdataset" else item.name
        stem = name
        owner = self.claims.setdefault(stem, item.id)
        if owner != item.id:
            stem = f"{name}-{item.id[:8]}"
            self.claims.setdefault(stem, item.id)
        return stem

    def _write_sample(self, item: Item) -> bool | str | Future:
        """Plan one WebDataset sample; skip it if its shard holds it unchanged, else append it (in a
        save thread: `threads` of them read and encode samples at once, each appended when ready)."""
        try:
            stem = self._stem(item)
            image = self._image(item, stem)
            members = [Member(image.relative[len(stem) :], image.content)]
            digests = [image.digest]
            caption = item.get(self.caption_property)
            if caption is not None:
                text = ("\n".join(caption) if isinstance(caption, list) else str(caption)).encode()
                members.append(Member(self.caption_ext, lambda: text))
                digests.append(hash_bytes(text))
            props = canonical_json(item.props).encode()
            members.append(Member(".json", lambda: props))
            digests.append(hash_bytes(props))
        except Exception as exc:
            return describe_error(exc)
        digest = hash_bytes("\n".join(digests).encode())
        if self.shards.unchanged(item.id, digest):
            return False
        return self.pool.submit(self._append_sample, item, stem, digest, members)

    def _append_sample(
        self, item: Item, key: str, digest: str, members: list[Member]
    ) -> tuple[Item, bool | str]:
        try:
            self.shards.write(item.id, key, digest, members)
            return item, True
        except NotOurs as exc:
            return item, str(exc)
        except Exception as exc:
            return item, describe_error(exc)

    def _write_files(self, item: Item, files: list[PlannedFile]) -> tuple[Item, bool | str]:
        try:
            for f in files:
                self.files.write(f.relative, item.id, f.digest, f.content)
            return item, True
        except NotOurs as exc:
            return item, str(exc)
        except Exception as exc:
            return item, describe_error(exc)

    def _manifest(self) -> tuple[str, bytes]:
        rows = [self.rows[path] for path in sorted(self.rows)]
        if self.format == "parquet":
            data = self._parquet(rows)
        elif self.format == "kohya_json":
            table = {row.pop("key"): row for row in (dict(r) for r in rows)}
            data = (canonical_json(table) + "\n").encode()
        else:
            data = "".join(canonical_json(row) + "\n" for row in rows).encode()
        return hash_bytes(data), data

    def _parquet(self, rows: list[dict[str, Any]]) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.embed_images:
            rows = [{**row, "image": (self.files.root / row["image_path"]).read_bytes()} for row in rows]
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        return buffer.getvalue().to_pybytes()

    def _row(self, item: Item, image_path: str) -> None:
        props = {k: v for k, v in item.props.items() if k != self.caption_property}
        caption = item.get(self.caption_property)
        if self.format == "kohya_json":
            first = caption[0] if isinstance(caption, list) and caption else caption
            entry: dict[str, Any] = {"key": image_path.rpartition(".")[0]}
            if first is not None:
                entry["caption"] = first
            if isinstance(item.get("tags"), list):
                entry["tags"] = ", ".join(map(str, item["tags"]))
            self.rows[image_path] = entry
        elif self.format == "imagefolder":
            relative = image_path.removeprefix(MANIFESTS["imagefolder"][0])
            self.rows[image_path] = {**props, "file_name": relative, self.caption_column: caption}
        else:
            self.rows[image_path] = {**props, "image_path": image_path, "caption": caption}

    def _plan(self, item: Item, stem: str) -> list[PlannedFile]:
        image = self._image(item, MANIFESTS.get(self.format, ("",))[0] + stem)
        planned = [image]
        if self.format in MANIFESTS:
            self._row(item, image.relative)
            return planned
        caption = item.get(self.caption_property)
        if caption is not None:
            text = "\n".join(caption) if isinstance(caption, list) else str(caption)
            planned.append(_text(stem + self.caption_ext, text + "\n"))
        if self.json_sidecar:
            planned.append(_text(stem + ".json", canonical_json(item.props) + "\n"))
        return planned

    def _image(self, item: Item, stem: str) -> PlannedFile:
        """Copy the original bytes when no step changed the pixels and the format is kept; else encode
        once (or take the bytes a pool worker already encoded)."""
        encoding = self.encoding
        target = encoding.target(item)
        if target is None:
            ext = FORMAT_EXTENSIONS.get(item.format) or f".{item.format.lower() or 'img'}"
            return PlannedFile(stem + ext, f"copy:{item.id}", lambda: self.ctx.ws.blobs.get(item.id))
        digest = encoding.digest(item, target)

        def content() -> bytes:
            if item.rendered is not None and item.rendered[0] == digest:
                return item.rendered[1]
            return encoding.encode(item.image, target)

        return PlannedFile(stem + FORMAT_EXTENSIONS[target], digest, content)

    def renderer(self) -> ImageEncoding:
        return ImageEncoding(self.image_format, self.quality)


@dataclass(frozen=True)
class ImageEncoding:
    """How `save` turns an item's image into file bytes; also runs in pool workers (picklable)."""

    image_format: str
    quality: int

    def target(self, item: Item) -> str | None:
        """The Pillow format to encode to, or None to copy the original bytes."""
        untouched = item.image_hash == item.id
        if self.image_format == "original":
            return None if untouched else (item.format if item.format in PIL_FORMATS.values() else "PNG")
        target = PIL_FORMATS[self.image_format]
        return None if untouched and target == item.format else target

    def digest(self, item: Item, target: str) -> str:
        return f"{item.image_hash}:{target}:{self.quality}"

    def encode(self, image: Any, target: str) -> bytes:
        if target == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        buffer = io.BytesIO()
        options: dict[str, Any] = {"quality": self.quality} if target in ("JPEG", "WEBP") else {}
        image.save(buffer, format=target, **options)
        return buffer.getvalue()

    def render(self, item: Item) -> tuple[str, bytes] | None:
        target = self.target(item)
        if target is None:
            return None
        return self.digest(item, target), self.encode(item.image, target)


@dataclass(frozen=True, slots=True)
class PlannedFile:
    relative: str
    digest: str  # names the content without producing it
    content: Callable[[], bytes]


def _text(relative: str, text: str) -> PlannedFile:
    data = text.encode()
    return PlannedFile(relative, hash_bytes(data), lambda: data)
