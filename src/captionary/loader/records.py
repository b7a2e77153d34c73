"""Record: one training sample as a reader found it (where its image is, its captions, its size)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from captionary.core.atomic import open_regular
from captionary.core.images import to_rgb
from captionary.core.locations import is_http

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class WorkspaceImage:
    """An item of a captionary workspace: its pixels are recomputed from the blob store (recipe)."""

    workspace: str
    item: Any  # captionary.core.item.Item (pickles without pixels or store)

    def open(self) -> Image:
        from captionary.core.blobstore import workspace_blob_store

        return self.item.attach(workspace_blob_store(self.workspace)).image


@dataclass(frozen=True)
class Record:
    """One sample: `image` is a local path, an http(s) URL, the encoded bytes, or a workspace item.

    `captions` holds every caption of the image (one is chosen per epoch); `size` is (width, height)
    when the reader knows it without decoding; `where` names the file and line it came from.
    """

    id: str
    image: str | bytes | WorkspaceImage
    captions: tuple[str, ...] = ()
    size: tuple[int, int] | None = None
    where: str = ""
    props: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1  # kohya's `N_name` folder: N times per epoch


def captions_of(value: Any) -> tuple[str, ...]:
    """A caption cell as a tuple of captions: a string (one per non-empty line) or a list of them."""
    if value is None:
        return ()
    if isinstance(value, str):
        lines = [line.strip() for line in value.splitlines()]
        return tuple(line for line in lines if line)
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if v is not None and str(v).strip())
    return (str(value),)


def open_image(record: Record, downloads: Any = None, min_size: tuple[int, int] | None = None) -> Image:
    """Decode a record's image, upright (EXIF orientation applied), in RGB.

    With `min_size` (upright width, height), a JPEG is decoded at the smallest DCT scale that keeps at
    least twice that size (as Pillow's `thumbnail` does): much faster for photos far above the bucket.
    """
    from PIL import Image, ImageOps

    from captionary.core.images import _TRANSPOSED, EXIF_ORIENTATION

    def decoded(image: Image.Image) -> Image.Image:
        if min_size is not None and image.format in ("JPEG", "MPO"):
            width, height = min_size
            if image.getexif().get(EXIF_ORIENTATION, 1) in _TRANSPOSED:
                width, height = height, width
            image.draft("RGB", (2 * width, 2 * height))
        image = ImageOps.exif_transpose(image)  # a new image, not tied to the file
        return image if image.mode == "RGB" else to_rgb(image)

    source = record.image
    try:
        if isinstance(source, WorkspaceImage):
            return decoded(source.open())
        if isinstance(source, bytes):
            return decoded(Image.open(io.BytesIO(source)))
        if is_http(source):
            if downloads is None:
                raise ValueError("an image URL needs a download cache (ImageCaptionDataset(cache_dir=...))")
            source = str(downloads.path(source))
        with open_regular(source) as file:  # a FIFO named like an image would block the loader
            return decoded(Image.open(file))
    except Exception as exc:
        raise ValueError(f"{record.where or record.id}: cannot read the image: {exc}") from exc


def probe_size(record: Record, downloads: Any = None) -> tuple[int, int]:
    """(width, height) upright, from the header only."""
    from PIL import Image

    from captionary.core.images import _TRANSPOSED, EXIF_ORIENTATION

    if record.size is not None:
        return record.size
    source = record.image
    if isinstance(source, WorkspaceImage):
        return source.open().size
    try:
        if isinstance(source, bytes):
            file: Any = io.BytesIO(source)
        else:
            file = open_regular(str(downloads.path(source)) if is_http(source) else source)
        with file, Image.open(file) as image:
            width, height = image.size
            if image.getexif().get(EXIF_ORIENTATION, 1) in _TRANSPOSED:
                width, height = height, width
        return width, height
    except Exception as exc:
        raise ValueError(f"{record.where or record.id}: cannot read the image header: {exc}") from exc
