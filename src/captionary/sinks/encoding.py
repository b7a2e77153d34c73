"""How `save` turns an item's image into file bytes: the original copied, or encoded once."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from captionary.core import engines
from captionary.core.hashing import hash_bytes
from captionary.core.images import EXIF_ORIENTATION, FORMAT_EXTENSIONS, normal_format
from captionary.core.item import Item, auto_engine, known_size
from captionary.core.jpeg_header import jpeg_header

PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


@dataclass(frozen=True, slots=True)
class PlannedFile:
    relative: str
    digest: str  # names the content without producing it
    content: Callable[[], bytes]


def text_file(relative: str, text: str) -> PlannedFile:
    data = text.encode()
    return PlannedFile(relative, hash_bytes(data), lambda: data)


COPY = "upright:"
"""The digest prefix of an image file that is the original's bytes (turned upright if it must be)."""
SMALL_COPY_PIXELS = 1_000_000
"""An original up to this size (a few hundred KB) is copied by the thread that writes bytes in hand:
reading it from the store costs about what writing it does, and more threads creating small files
cost more in hand-offs than they overlap (5,000 600x600 JPEGs: 1.7 s of system time with one
thread, 2.7-5.3 s with four)."""


def cheap_copy(item: Item, image: PlannedFile) -> bool:
    """The image file is a copy of a small original."""
    size = known_size(item) if image.digest.startswith(COPY) else None
    return size is not None and size[0] * size[1] <= SMALL_COPY_PIXELS


@dataclass(frozen=True)
class ImageEncoding:
    """How `save` turns an item's image into file bytes; also runs in pool workers (picklable)."""

    image_format: str
    quality: int
    engine: str = "pillow"  # resolved: pillow | vips | auto (per item, where pyvips is installed)

    def target(self, item: Item) -> str | None:
        """The Pillow format to encode to, or None to copy the original bytes."""
        untouched = item.image_hash == item.id
        if self.image_format == "original":
            return None if untouched else (item.format if item.format in PIL_FORMATS.values() else "PNG")
        target = PIL_FORMATS[self.image_format]
        return None if untouched and target == item.format else target

    def engine_for(self, item: Item) -> str:
        """The engine that encodes `item`: `save`'s, or under `auto` the one that made its pixels (or,
        for an image as stored, the one `auto` chooses by its size: `core.item.auto_engine`)."""
        return auto_engine(item) if self.engine == "auto" else self.engine

    def digest(self, item: Item, target: str) -> str:
        """Names the file's content: the image, format, quality and (when not Pillow) the engine."""
        name = self.engine_for(item)
        engine = "" if name == "pillow" else f":{name}"
        return f"{item.image_hash}:{target}:{self.quality}{engine}"

    def encode(self, item: Item, target: str) -> bytes:
        engine = engines.get(self.engine_for(item))
        return engine.encode(item.pixels(engine), target, self.quality)

    def render(self, item: Item) -> tuple[str, bytes] | None:
        target = self.target(item)
        if target is None:
            return None
        return self.digest(item, target), self.encode(item, target)

    def plan(self, item: Item, stem: str, original: Callable[[], bytes]) -> PlannedFile:
        """The image file for `stem`: the original bytes when no step changed the pixels and the format
        is kept; else encoded once (or the bytes a pool worker already encoded)."""
        target = self.target(item)
        if target is None:
            ext = FORMAT_EXTENSIONS.get(item.format) or f".{item.format.lower() or 'img'}"
            return PlannedFile(stem + ext, COPY + item.id, lambda: upright(original(), self.quality))
        digest = self.digest(item, target)

        def content() -> bytes:
            if item.rendered is not None and item.rendered[0] == digest:
                return item.rendered[1]
            return self.encode(item, target)

        return PlannedFile(stem + FORMAT_EXTENSIONS[target], digest, content)


def upright(data: bytes, quality: int) -> bytes:
    """The original bytes when they need no turn (no EXIF orientation, or 1); else the image turned
    upright in its pixels, without the orientation tag (other EXIF, the ICC profile kept), encoded once.
    A JPEG is re-encoded with its own quantization tables and chroma subsampling (its quality, not
    `quality`): Pillow has no lossless DCT rotation, and no well-kept Python library offers one."""
    header = jpeg_header(data)  # a JPEG's orientation read in microseconds (else Pillow reads it)
    if header is not None and header.orientation not in range(2, 9):
        return data
    from PIL import Image, ImageOps, JpegImagePlugin

    image = Image.open(io.BytesIO(data))
    if image.getexif().get(EXIF_ORIENTATION, 1) not in range(2, 9):
        return data
    fmt = normal_format(image.format)
    options: dict[str, Any] = {}
    if fmt == "JPEG":
        options["qtables"] = image.quantization
        sampling = JpegImagePlugin.get_sampling(image)
        if sampling != -1:
            options["subsampling"] = sampling
    elif fmt == "WEBP":
        options["quality"] = quality
    if icc := image.info.get("icc_profile"):
        options["icc_profile"] = icc
    turned = ImageOps.exif_transpose(image)
    exif = turned.getexif()
    exif.pop(EXIF_ORIENTATION, None)
    buffer = io.BytesIO()
    turned.save(buffer, format=fmt, exif=exif.tobytes(), **options)
    return buffer.getvalue()
