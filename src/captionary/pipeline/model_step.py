"""The bases of batch steps that run a model: `ModelStep` (loaded once per process, a load failure
reported with every item) and `ImageBatchStep` (its items' images decoded ahead, in threads).

Both keep their working state in `step.runtime` (never pickled, never in a cache key), so a step sent
to a Ray actor or built again starts with nothing loaded.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.core.images import to_rgb
from captionary.core.item import Item, decode_image
from captionary.errors import ItemError
from captionary.pipeline.step import BatchStep, Outcome, Runtime

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass
class ModelRuntime(Runtime):
    model: Any = None
    ready: bool = False  # the model is loaded (it may be None: a step that needs none)
    load_error: str | None = None  # set once a load failed: every later batch raises it
    lock: threading.Lock = field(default_factory=threading.Lock)  # the first thread to ask loads
    # id(item) -> (the item, its outcome or error) of the last batch with a failure (`outcomes_once`)
    memo: dict[int, tuple[Item, Any]] = field(default_factory=dict)


class ModelStep(BatchStep):
    """A batch step with a model. Implement `load_model()`; use `self.loaded()` in `apply_batch`.

    The model is loaded once per process, in whichever thread asks first (`setup`, or a decoding
    thread that needs it). A load that raises is remembered: every batch then fails with the same
    `ItemError` ("<step>: cannot load the model: ..."), so each item records why, in the local
    executor as on a Ray model actor, and the next run tries again (failures are not cached).
    `teardown` closes the model (its `close()`, when it has one) and forgets the runtime.
    """

    runtime_type: ClassVar[type[Runtime]] = ModelRuntime

    def load_model(self) -> Any:
        """Load and return the model (called once per process)."""
        raise NotImplementedError

    def load_error(self, exc: Exception) -> str:
        """The message every item gets when `load_model` raised `exc`."""
        return f"{self.name}: cannot load the model: {type(exc).__name__}: {exc}"

    def loaded(self) -> Any:
        """The model, loading it on first use; raises the remembered load error."""
        state: ModelRuntime = self.runtime
        if state.ready:
            return state.model
        with state.lock:
            if not state.ready and state.load_error is None:
                try:
                    state.model = self.load_model()
                    state.ready = True
                except Exception as exc:
                    state.load_error = self.load_error(exc)
            if state.load_error is not None:
                raise ItemError(state.load_error)
            return state.model

    def setup(self) -> None:
        with contextlib.suppress(ItemError):  # remembered: every batch reports it
            self.loaded()

    def outcomes_once(self, items: Sequence[Item], run: Callable[[Sequence[Item]], list[Any]]) -> list[Any]:
        """`run(items)`: one outcome or Exception per item. When some fail, the failure is raised (the
        item's own for one item, else an ItemError counting them) and every outcome is kept, so the
        stage's item-by-item retry is answered from them and nothing is computed twice."""
        memo = self.runtime.memo
        if not all(id(item) in memo for item in items):
            memo.clear()
            for item, outcome in zip(items, run(items)):
                memo[id(item)] = (item, outcome)  # the item kept: its id is not reused meanwhile
        outcomes = [memo[id(item)][1] for item in items]
        failed = [o for o in outcomes if isinstance(o, Exception)]
        if failed:
            raise failed[0] if len(items) == 1 else ItemError(f"{len(failed)} of {len(items)} items failed")
        for item in items:
            memo.pop(id(item), None)
        return outcomes

    def teardown(self) -> None:
        model = self.runtime.model
        self.reset_runtime()
        if hasattr(model, "close"):
            model.close()


def decode_threads() -> int:
    """One more decoding thread than cores: a thread waiting for the GIL (the Python parts of a decode,
    while the event loop or the driver holds it) leaves its core idle, and the spare one fills it. An
    API caption step at concurrency 64 on full-size photos went from 78-80% to 86% of the 2-core
    encode rate (README, "What moved it in the fifth stop"); 4 threads did no better."""
    return (os.cpu_count() or 1) + 1


@dataclass
class ImageBatchRuntime(ModelRuntime):
    # id(item) -> (the item, kept alive so its id stays its own; its input being prepared)
    queued: dict[int, tuple[Item, Future]] = field(default_factory=dict)
    pool: ThreadPoolExecutor | None = None
    # never held while loading: prefetch runs in the driver thread and must not block
    pool_lock: threading.Lock = field(default_factory=threading.Lock)


class ImageBatchStep(ModelStep):
    """A model step over images: use `self.inputs(items)` in `apply_batch`.

    When a batch is queued (`prefetch`, called in the driver thread while the model runs the batch
    before), its items' images are decoded and prepared on every core (decoding releases the GIL;
    `decode_threads`).
    An original is decoded from its bytes at the scale `draft_scale` allows (a JPEG at a reduced DCT
    scale), without keeping the full-size pixels on the item; a derived image is replayed from its
    recipe. `prepare(image, item)` turns the image into the model's input (default: RGB). Inputs of
    a batch that failed before taking them are cancelled; `teardown` stops the decoding threads.
    Steps that do not read pixels (`reads_image = False`) prefetch nothing.
    """

    runtime_type: ClassVar[type[Runtime]] = ImageBatchRuntime

    def draft_scale(self, width: int, height: int) -> float | None:
        """The smallest scale (< 1) of the upright `width` x `height` image the model needs; None:
        decode fully. Part of what the step computes: the cache key must cover what changes it."""
        return None

    def prepare(self, image: Image, item: Item) -> Any:
        """The model's input for one item's image (runs in a decoding thread). Must not change
        `image` in place: for a derived image it is the item's own."""
        return to_rgb(image)

    def prefetch(self, items: Sequence[Item]) -> None:
        if not self.reads_image:
            return
        state: ImageBatchRuntime = self.runtime
        pool = self._decoders(state)
        for item in items:
            state.queued[id(item)] = (item, pool.submit(self._input, item))

    def inputs(self, items: Sequence[Item]) -> list[Any]:
        """The items' prepared inputs: those prefetched, the others prepared now (in parallel)."""
        state: ImageBatchRuntime = self.runtime
        pool = self._decoders(state)
        futures = []
        for item in items:
            entry = state.queued.pop(id(item), None)
            futures.append(entry[1] if entry is not None else pool.submit(self._input, item))
        return [future.result() for future in futures]

    def compute_batch(self, items: Sequence[Item]) -> list[Outcome]:
        try:
            return self.batch_outcomes(items)
        finally:  # a batch that failed before taking its inputs (model not loaded) must not keep them
            state: ImageBatchRuntime = self.runtime
            for item in items:
                entry = state.queued.pop(id(item), None)
                if entry is not None:
                    entry[1].cancel()

    def batch_outcomes(self, items: Sequence[Item]) -> list[Outcome]:
        """The batch's outcomes: `apply_batch`'s property updates. Override to return other outcomes
        (a detector that splits each image into children returns `Outcome(children=...)`)."""
        return super().compute_batch(items)

    def teardown(self) -> None:
        if (pool := self.runtime.pool) is not None:  # first: a decoding thread may use the model
            pool.shutdown(cancel_futures=True)
        super().teardown()

    def decode(self, item: Item) -> Image:
        """The item's image: an original decoded from its bytes (at the draft scale), so the
        full-size pixels are not kept on the item; a derived image replayed from its recipe."""
        if not item.recipe and item.store is not None:
            return decode_image(item.store.get(item.base), self.draft_scale)
        return item.image

    def _input(self, item: Item) -> Any:
        return self.prepare(self.decode(item), item)

    def _decoders(self, state: ImageBatchRuntime) -> ThreadPoolExecutor:
        if state.pool is None:
            with state.pool_lock:
                if state.pool is None:
                    name = f"captionary-{self.name}-decode"
                    state.pool = ThreadPoolExecutor(decode_threads(), thread_name_prefix=name)
        return state.pool
