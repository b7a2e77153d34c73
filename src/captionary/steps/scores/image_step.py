"""ImageBatchStep: the base of score steps that read pixels. The next batch's images are decoded in
threads while the model runs the current one, at the smallest JPEG scale the model needs."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from captionary.core.images import to_rgb
from captionary.core.item import Item, decode_image
from captionary.pipeline.step import BatchStep, Outcome
from captionary.steps.scores.models import release

if TYPE_CHECKING:
    from PIL.Image import Image

_LOCK = threading.Lock()  # held only to create the pool: prefetch runs in the driver thread


class ImageBatchStep(BatchStep):
    """A batch step over RGB images: implement `apply_batch` using `self.images(items)`.

    `fast_decode` lets a JPEG original be decoded at a reduced DCT scale that still gives the model
    the pixels it needs (`draft`); it is part of the cache key, as the pixels differ slightly.
    """

    fast_decode: bool = True

    def draft(self, width: int, height: int) -> float | None:
        """The smallest scale of the upright `width` x `height` image this step needs; None: full."""
        return None

    def prefetch(self, items: Sequence[Item]) -> None:
        queued = self.__dict__.setdefault("_queued", {})
        pool = self._decoders()
        for item in items:
            queued[id(item)] = (item, pool.submit(self._decode, item))

    def images(self, items: Sequence[Item]) -> list[Image]:
        """The items' images as RGB: those prefetched, the others decoded now (in parallel)."""
        queued = self.__dict__.get("_queued", {})
        pool = self._decoders()
        futures: list[Future] = []
        for item in items:
            entry = queued.pop(id(item), None)
            futures.append(entry[1] if entry else pool.submit(self._decode, item))
        return [future.result() for future in futures]

    def compute_batch(self, items: Sequence[Item]) -> list[Outcome]:
        try:
            return super().compute_batch(items)
        finally:  # a batch that failed before taking its images (model not loaded) must not keep them
            queued = self.__dict__.get("_queued")
            for item in items if queued else ():
                entry = queued.pop(id(item), None)
                if entry is not None:
                    entry[1].cancel()

    def teardown(self) -> None:
        release(self)
        self.__dict__.pop("_queued", None)
        pool = self.__dict__.pop("_pool", None)
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    def _decoders(self) -> ThreadPoolExecutor:
        with _LOCK:
            if (pool := self.__dict__.get("_pool")) is None:
                name = f"captionary-{self.name}-decode"
                pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix=name)
                self.__dict__["_pool"] = pool
            return pool

    def _decode(self, item: Item) -> Image:
        """An original is decoded here rather than through `item.image`, so the full-size pixels are
        not kept on the item after scoring; a derived image is replayed from its recipe."""
        if not item.recipe and item.store is not None:
            draft = self.draft if self.fast_decode else None
            return to_rgb(decode_image(item.store.get(item.base), draft))
        return to_rgb(item.image)
