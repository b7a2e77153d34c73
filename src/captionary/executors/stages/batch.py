"""Batch stage: model inference on batches of cache misses, in one thread of its own (one model, one
device), so inference overlaps decoding and writing."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from captionary.core.arrays import externalize_many
from captionary.core.cache import INSERT_RESULT, StepCache, item_key, result_row
from captionary.core.item import Item
from captionary.errors import describe_error
from captionary.executors.context import RunContext
from captionary.executors.stages.base import Stage
from captionary.executors.stages.fanout import refuse_imageless, spread
from captionary.pipeline.step import BatchStep, Outcome

_UNASKED = object()
PARTIAL_BATCH_WAIT = 0.5
"""Seconds without new input after which a partial batch runs (keeps streaming inputs flowing)."""


class BatchStage(Stage):
    max_pending = 2

    def __init__(self, ctx: RunContext, index: int, step: BatchStep):
        super().__init__()
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]
        self.db = ctx.ws.reader()
        self.cache: StepCache | None = None  # read on first use
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=f"captionary-{step.name}")
        self.loaded = False
        self.load_error: str | None = None
        self.device: Any = _UNASKED  # the step's accelerator (str or None), asked when it would load
        self.waiting: list[tuple[Item, bytes]] = []
        self.last_push = time.monotonic()

    def push(self, items: list[Item]) -> list[Item]:
        self.last_push = time.monotonic()
        items = refuse_imageless(self.ctx, self.index, self.step, items)
        keys = [item_key(self.step, item) for item in items]
        self.cache = self.cache or StepCache(self.db, self.step)
        found = self.cache.lookup(keys)
        ready = []
        for item, key in zip(items, keys):
            outcome = found.get(key)
            if outcome is None:
                self.waiting.append((item, key))
                continue
            self.stats.n_in += 1
            self.stats.cached += 1
            ready.extend(self.settle(item, outcome))
        size = max(1, self.step.size_of_batch)
        while len(self.waiting) >= size and self.may_load():
            self.submit(self.waiting[:size])
            self.waiting = self.waiting[size:]
        return ready

    def poll(self, block: bool = False) -> list[Item]:
        if self.waiting and time.monotonic() - self.last_push > PARTIAL_BATCH_WAIT and self.may_load():
            self.submit(self.waiting)  # input paused: run what we have
            self.waiting = []
        return super().poll(block)

    def may_load(self) -> bool:
        """False while an earlier model step holds the device this step's model would load onto: its
        items wait (in memory, as items) until that step has seen its last item and released it."""
        if self.loaded:
            return True
        device = self._device()
        if device is None:
            return True
        kind = device.split(":")[0]
        held = self.ctx.devices_held
        return not any(index < self.index and device.split(":")[0] == kind for index, device in held.items())

    def finish(self) -> list[Item]:
        if self.waiting:
            self.submit(self.waiting)
            self.waiting = []
        done = super().finish()
        self.release()  # the step has seen its last item: free its model now, not at the end of the run
        return done

    def _device(self) -> str | None:
        """The step's accelerator, asked once, when the step is about to load."""
        if self.device is _UNASKED:
            try:
                self.device = self.step.accelerator()
            except Exception:  # loading will fail too, and say why for every item
                self.device = None
        return self.device

    def release(self) -> None:
        self.ctx.devices_held.pop(self.index, None)
        if self.loaded:
            self.stats.usage = dict(self.thread.submit(self.step.usage).result())
            teardown = self.thread.submit(self.step.teardown)
            if self.load_error is None:
                teardown.result()
            else:
                teardown.exception()  # after a failed load, cleaning up is best effort
            self.loaded = False

    def submit(self, batch: list[tuple[Item, bytes]]) -> None:
        if not self.loaded:
            if (device := self._device()) is not None:
                self.ctx.devices_held[self.index] = device
            self.thread.submit(self.load)
            self.loaded = True
        self.step.prefetch([item for item, _ in batch])
        self.track(self.thread.submit(self.compute, batch))

    def load(self) -> None:
        """Runs in the batch thread, before the first batch: a model that fails to load fails each
        item with the reason (not cached, so the next run tries again)."""
        self.load_error = None
        try:
            self.step.setup()
        except Exception as exc:
            self.load_error = f"{self.step.name} could not load its model: {describe_error(exc)}"

    def compute(self, batch: list[tuple[Item, bytes]]) -> list[tuple[Item, bytes, Outcome | str]]:
        """Runs in the batch thread."""
        if self.load_error is not None:
            return [(item, key, self.load_error) for item, key in batch]
        outcomes = compute_isolated(self.step, [item for item, _ in batch], self.stored_all)
        return [(item, key, outcome) for (item, key), outcome in zip(batch, outcomes)]

    def stored_all(self, outcomes: list[Outcome]) -> list[Outcome]:
        """Numpy arrays among a batch's properties become blobs, one per property name for the batch."""
        props = externalize_many([o.props for o in outcomes], self.ctx.ws.blobs, self.step.model_id())
        for outcome, updated in zip(outcomes, props):
            outcome.props = updated
        return outcomes

    def collect(self, result: list[tuple[Item, bytes, Outcome | str]]) -> list[Item]:
        ready, rows = [], []
        for item, key, outcome in result:
            self.stats.n_in += 1
            if isinstance(outcome, str):
                self.ctx.fail(self.index, item, outcome)
                continue
            try:
                rows.append(result_row(key, self.step, item, outcome))
            except (TypeError, ValueError) as exc:
                self.ctx.fail(self.index, item, f"result is not JSON-serialisable: {exc}")
                continue
            self.stats.computed += 1
            ready.extend(self.settle(item, outcome))
        self.ctx.writer.write_many(INSERT_RESULT, rows)
        return ready

    def settle(self, item: Item, outcome: Outcome) -> list[Item]:
        """The item (unless dropped) and the children a fan-out batch step made of it."""
        return spread(self.ctx, self.index, self.step, item, outcome)

    def close(self, complete: bool) -> None:
        self.release()
        self.thread.shutdown(cancel_futures=True)
        self.db.close()


def compute_isolated(
    step: BatchStep, items: Sequence[Item], finish: Callable[[list[Outcome]], list[Outcome]] = list
) -> list[Outcome | str]:
    """A batch's outcomes (passed through `finish`, e.g. storing their arrays); a batch that raises is
    run again item by item, so one bad image fails alone, with its error as a string."""
    try:
        return list(finish(list(step.compute_batch(items))))
    except Exception:
        outcomes: list[Outcome | str] = []
        for item in items:
            try:
                outcomes.append(finish([step.compute_batch([item])[0]])[0])
            except Exception as exc:
                outcomes.append(describe_error(exc))
        return outcomes
