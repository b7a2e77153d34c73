"""Review-app renditions: an item's current image as WebP at a bounded size, made once, kept as a blob.

A rendition is named by the image it shows (a blob hash or a derived id, which both change whenever
the pixels do), so the server may send it with immutable cache headers. Derived images are recomputed
from their recipe, exactly as the pipeline made them.
"""

from __future__ import annotations

import contextlib
import io
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from captionary.core.item import Item, decode_image
from captionary.core.recipes import parse_recipe

if TYPE_CHECKING:
    from PIL.Image import Image

    from captionary.core.blobstore import BlobStore
    from captionary.review.decisions import DecisionStore

SIZES = {"thumb": 512, "large": 1600}
QUALITY = 80


def render(blobs: BlobStore, item: str, base: str | None, recipe: str | None, edge: int) -> bytes:
    """The item's current image, fitted into `edge` x `edge`, as WebP bytes."""
    steps = recipe_steps(recipe)
    if steps:
        image = Item(item, None, {}, store=blobs, base=base or item, recipe=steps).image
    else:  # an original: a JPEG is decoded at reduced scale, which is several times faster
        image = decode_image(blobs.get(base or item), lambda w, h: 2 * edge / max(w, h))
    return encode(image, edge)


def encode(image: Image, edge: int) -> bytes:
    from PIL import Image as PILImage

    if image.mode not in ("RGB", "RGBA"):
        alpha = image.mode in ("LA", "PA", "RGBa", "La") or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "RGB")
    image = image.copy() if image.width > edge or image.height > edge else image
    image.thumbnail((edge, edge), PILImage.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=QUALITY, method=4)
    return out.getvalue()


def recipe_steps(recipe: str | None) -> tuple:
    """Rebuild a stored recipe (`[[step, params, read], ...]`) as (step, read properties) pairs."""
    return parse_recipe(recipe, {})


class Thumbnails:
    """Renditions cached in the `thumbnails` table (row) and the blob store (bytes)."""

    def __init__(self, store: DecisionStore, blobs: BlobStore):
        self.store = store
        self.blobs = blobs
        self.queue: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self.thread: threading.Thread | None = None

    def get(self, item: str, image: str, base: str | None, recipe: str | None, size: str) -> bytes:
        edge = SIZES[size]
        rows = self.store.read("SELECT blob FROM thumbnails WHERE image = ? AND size = ?", (image, edge))
        if rows and rows[0][0] in self.blobs:  # (`captionary gc` may have removed the blob)
            return self.blobs.get(rows[0][0])
        data = render(self.blobs, item, base, recipe, edge)
        digest = self.blobs.put(data)
        self.store.write(
            "INSERT OR REPLACE INTO thumbnails VALUES (?, ?, ?, NULL, NULL)", [(image, edge, digest)]
        )
        return data

    def cached(self, image: str, size: str) -> bool:
        rows = self.store.read(
            "SELECT blob FROM thumbnails WHERE image = ? AND size = ?", (image, SIZES[size])
        )
        return bool(rows) and rows[0][0] in self.blobs

    def warm(self, jobs: list[tuple[str, str, str | None, str | None]]) -> None:
        """Make thumbnails ahead of the person, in a background thread: (item, image, base, recipe)."""
        for job in jobs:
            self.queue.put(lambda job=job: self.cached(job[1], "thumb") or self.get(*job, "thumb"))
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="captionary-thumbnails", daemon=True)
            self.thread.start()

    def _loop(self) -> None:
        while (job := self.queue.get()) is not None:
            with contextlib.suppress(Exception):  # a broken image: the request for it reports it
                job()

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(timeout=5)
