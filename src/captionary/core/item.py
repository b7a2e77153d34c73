"""Item: one image (a blob) and its JSON-serialisable properties, as steps see it."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from captionary.core.blobstore import BlobStore


class Item:
    """One image flowing through a pipeline.

    `id` is the sha256 of the original bytes and never changes; `image_hash` names the current image
    blob (equal to `id` until a step changes the pixels); `props` holds the properties (`caption`,
    `tags`, `width`, ...); `source` is where the original came from and `name` the relative name
    sinks use for output files.
    """

    __slots__ = ("_decoded", "_store", "id", "image_hash", "name", "props", "source")

    def __init__(
        self,
        id: str,
        image_hash: str | None = None,
        props: dict[str, Any] | None = None,
        source: str | None = None,
        name: str | None = None,
        store: BlobStore | None = None,
    ):
        self.id = id
        self.image_hash = image_hash or id
        self.props = props if props is not None else {}
        self.source = source
        self.name = name or id[:16]
        self._store = store
        self._decoded: Image | None = None

    def __getitem__(self, key: str) -> Any:
        return self.props[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.props.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.props

    @property
    def width(self) -> int:
        return self.props["width"]

    @property
    def height(self) -> int:
        return self.props["height"]

    @property
    def image_bytes(self) -> bytes:
        if self._store is None:
            raise RuntimeError("item is not attached to a blob store")
        return self._store.get(self.image_hash)

    @property
    def image(self) -> Image:
        """The current image, decoded once, upright (EXIF orientation applied)."""
        if self._decoded is None:
            self._decoded = decode_image(self.image_bytes)
        return self._decoded

    def attach(self, store: BlobStore) -> Item:
        self._store = store
        return self

    def evolve(self, image_hash: str | None = None, updates: dict[str, Any] | None = None) -> Item:
        """A copy with another image and/or updated properties (the decoded image is kept if unchanged)."""
        props = {**self.props, **updates} if updates else self.props
        new = Item(self.id, image_hash or self.image_hash, props, self.source, self.name, self._store)
        if image_hash is None or image_hash == self.image_hash:
            new._decoded = self._decoded
        return new

    def __getstate__(self) -> tuple:
        return (self.id, self.image_hash, self.props, self.source, self.name)

    def __setstate__(self, state: tuple) -> None:
        self.id, self.image_hash, self.props, self.source, self.name = state
        self._store = None
        self._decoded = None

    def __repr__(self) -> str:
        return f"Item({self.id[:12]}, name={self.name!r}, props={self.props!r})"


def decode_image(data: bytes) -> Image:
    """Decode fully (so truncation is caught here) and apply EXIF orientation."""
    from PIL import Image, ImageOps

    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageOps.exif_transpose(image)
