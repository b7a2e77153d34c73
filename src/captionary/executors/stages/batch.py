"""Batch stage: model inference on batches of cache misses, in one thread (one model, one device)."""

from __future__ import annotations

from captionary.core.cache import INSERT_RESULT, apply, item_key, lookup, result_row
from captionary.core.item import Item
from captionary.executors.context import Channel, Collector, RunContext
from captionary.executors.worker import describe_error
from captionary.pipeline.step import BatchStep, Outcome

PARTIAL_BATCH_WAIT = 0.5
"""Seconds without new input after which a partial batch runs (keeps streaming inputs flowing)."""


class BatchStage:
    def __init__(self, ctx: RunContext, index: int, step: BatchStep):
        self.ctx = ctx
        self.index = index
        self.step = step
        self.stats = ctx.stats[index]
        self.db = ctx.ws.reader()
        self.loaded = False

    def run(self, inbox: Channel, outbox: Channel | Collector) -> None:
        size = max(1, self.step.size_of_batch)
        waiting: list[tuple[Item, bytes]] = []
        try:
            while (chunk := inbox.get(timeout=PARTIAL_BATCH_WAIT if waiting else None)) is not None:
                if not chunk:  # input paused: run what we have
                    outbox.put(self.compute(waiting))
                    waiting = []
                    continue
                outbox.put(self.resolve(chunk, waiting))
                while len(waiting) >= size:
                    outbox.put(self.compute(waiting[:size]))
                    waiting = waiting[size:]
            if waiting:
                outbox.put(self.compute(waiting))
        finally:
            if self.loaded:
                self.step.teardown()
        outbox.close()

    def resolve(self, chunk: list[Item], waiting: list[tuple[Item, bytes]]) -> list[Item]:
        keys = [item_key(self.step, item) for item in chunk]
        found = lookup(self.db, keys)
        ready = []
        for item, key in zip(chunk, keys):
            outcome = found.get(key)
            if outcome is None:
                waiting.append((item, key))
                continue
            self.stats.n_in += 1
            self.stats.cached += 1
            if (kept := self.settle(item, outcome)) is not None:
                ready.append(kept)
        return ready

    def compute(self, batch: list[tuple[Item, bytes]]) -> list[Item]:
        if not batch:
            return []
        if not self.loaded:
            self.step.setup()
            self.loaded = True
        items = [item for item, _ in batch]
        try:
            outcomes: list[Outcome | str] = list(self.step.compute_batch(items))
        except Exception:
            outcomes = [self._one(item) for item in items]  # isolate the item that breaks the batch
        ready, rows = [], []
        for (item, key), outcome in zip(batch, outcomes):
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
            if (kept := self.settle(item, outcome)) is not None:
                ready.append(kept)
        self.ctx.writer.write_many(INSERT_RESULT, rows)
        return ready

    def _one(self, item: Item) -> Outcome | str:
        try:
            return self.step.compute_batch([item])[0]
        except Exception as exc:
            return describe_error(exc)

    def settle(self, item: Item, outcome: Outcome) -> Item | None:
        if outcome.dropped is not None:
            self.stats.dropped += 1
            self.ctx.drop(self.index, item, outcome.dropped)
            return None
        self.stats.n_out += 1
        return apply(item, outcome)
