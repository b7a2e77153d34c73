"""Chain stage: consecutive map/filter steps. Cache hits are resolved in bulk here; misses run
inline (light steps) or in the process pool (steps marked `parallel`), a chain per task."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor

from captionary.core.cache import (
    INSERT_RESULT,
    StepCache,
    apply,
    has_results,
    item_key,
    lookup_one,
    result_row,
)
from captionary.core.hashing import KEY_PREFIX
from captionary.core.item import Item, known_size, sharing_decodes
from captionary.core.outcome import Outcome
from captionary.executors.context import RunContext
from captionary.executors.stages.base import Stage
from captionary.executors.worker import Event, Renderer, advance, run_task
from captionary.pipeline.step import PerItemStep

TASK_PIXELS = 8_000_000
"""Pixels per pool task (from the items' `width` x `height`): about 3 photos of 2.4 MP, up to
`MAX_TASK` thumbnails. A task's hand-off (pickling, the result queue's lock, the pipe, a future) cost
a quarter of a worker's time on 64 px images at 4 items per task."""
MAX_TASK = 16
TASKS_PER_WORKER = 2
"""A chunk is cut into at least this many tasks per worker while it has items enough, so a slow step
on small images still spreads over every worker (and commits a few items at a time)."""
UNKNOWN_PIXELS = 2_000_000
"""An item whose size is not known counts as this (4 per task)."""


class ChainStage(Stage):
    def __init__(
        self,
        ctx: RunContext,
        indices: list[int],
        steps: list[PerItemStep],
        chain_id: int,
        pool: Callable[[], Executor] | None,
    ):
        super().__init__()
        self.ctx = ctx
        self.indices = indices
        self.steps = steps
        self.chain_id = chain_id
        self.pool = pool  # None: run misses inline in the driver
        self.render: Renderer | None = None  # set when a sink follows: it encodes in the worker
        self.db = ctx.ws.reader()
        self.caches: list[StepCache | None] = [None] * len(steps)  # read on first use
        self.positions = {step.cache_prefix[:KEY_PREFIX]: i for i, step in enumerate(steps)}
        self.max_pending = 4 * getattr(pool, "workers", 1)
        self.spread = TASKS_PER_WORKER * getattr(pool, "workers", 1) if pool is not None else 1
        self._cold: frozenset[bytes] | None = None

    def push(self, items: list[Item]) -> list[Item]:
        ready, misses = self.resolve(items)
        if any(not item.has_image for item, _ in misses):  # prompt items: refused at once, here
            ready.extend(self.collect(self.run_inline([m for m in misses if not m[0].has_image])))
            misses = [m for m in misses if m[0].has_image]
        for batch in pool_tasks(misses, self.spread):
            if self.pool is None:
                ready.extend(self.collect(self.run_inline(batch)))
            else:
                self.track(self.pool().submit(run_task, self.chain_id, batch, self.render, self.cold()))
        return ready

    def cold(self) -> frozenset[bytes]:
        """Cache prefixes of this chain's steps that had no result cached when the run began: a pool
        worker computes those steps without looking each item up (one query per item and step, 6% of
        a worker's time on thumbnails). A result another item adds during the run could only ever be
        for an item in the very same state, computed again instead of found."""
        if self._cold is None:
            self._cold = frozenset(
                step.cache_prefix[:KEY_PREFIX] for step in self.steps if not has_results(self.db, step)
            )
        return self._cold

    def collect(self, result: list[tuple[Item, list[Event]]]) -> list[Item]:
        return self.absorb(result)

    def close(self, complete: bool) -> None:
        self.db.close()

    def resolve(self, chunk: list[Item]) -> tuple[list[Item], list[tuple[Item, int]]]:
        """Walk the chain on cached outcomes; return items done and (item, first missing step)."""
        active = chunk
        misses: list[tuple[Item, int]] = []
        for position, step in enumerate(self.steps):
            if not active:
                break
            started = time.perf_counter()
            index = self.indices[position]
            stats = self.ctx.stats[index]
            if step.reads_image:  # items without pixels fail there (advance says why)
                misses.extend((item, position) for item in active if not item.has_image)
                active = [item for item in active if item.has_image]
            keys = [item_key(step, item) for item in active]
            cache = self.caches[position] or StepCache(self.db, step)
            self.caches[position] = cache
            found = cache.lookup(keys)
            survivors = []
            for item, key in zip(active, keys):
                outcome = found.get(key)
                if outcome is None:
                    misses.append((item, position))
                    continue
                stats.n_in += 1
                stats.cached += 1
                if outcome.dropped is not None:
                    stats.dropped += 1
                    self.ctx.drop(index, item, outcome.dropped)
                    continue
                stats.n_out += 1
                survivors.append(apply(item, outcome, step))
            active = survivors
            stats.seconds += time.perf_counter() - started
        return active, misses

    def run_inline(self, batch: list[tuple[Item, int]]) -> list[tuple[Item, list[Event]]]:
        with sharing_decodes():
            return [advance(self.steps, item, start, self.ctx.ws.blobs, self.cached) for item, start in batch]

    def cached(self, key: bytes) -> Outcome | None:
        """A later step's cached outcome for an item run inline: looked up in that step's `StepCache`
        (its rows read in one range scan per run) rather than by a query per item and step."""
        position = self.positions.get(key[:KEY_PREFIX])
        if position is None:
            return lookup_one(self.db, key)
        cache = self.caches[position] or StepCache(self.db, self.steps[position])
        self.caches[position] = cache
        return cache.lookup([key]).get(key)

    def absorb(self, results: list[tuple[Item, list[Event]]]) -> list[Item]:
        """Count, record and commit what the steps did; return the items that went through."""
        kept = []
        rows = []
        for item, events in results:
            item.attach(self.ctx.ws.blobs)
            passed = True
            for position, key, outcome, error, cached in events:
                index = self.indices[position]
                stats = self.ctx.stats[index]
                stats.n_in += 1
                if error is not None:
                    self.ctx.fail(index, item, error)
                    passed = False
                    break
                if cached:
                    stats.cached += 1
                else:
                    try:
                        rows.append(result_row(key, self.steps[position], item, outcome))
                    except (TypeError, ValueError) as exc:
                        self.ctx.fail(index, item, f"result is not JSON-serialisable: {exc}")
                        passed = False
                        break
                    stats.computed += 1
                if outcome.dropped is not None:
                    stats.dropped += 1
                    self.ctx.drop(index, item, outcome.dropped)
                    passed = False
                    break
                stats.n_out += 1
            if passed:
                kept.append(item)
        self.ctx.writer.write_many(INSERT_RESULT, rows)
        return kept


def pool_tasks(misses: list[tuple[Item, int]], spread: int = 1) -> list[list[tuple[Item, int]]]:
    """`misses` cut into tasks of about `TASK_PIXELS` each, of at most `MAX_TASK` items, and into no
    fewer than `spread` tasks while there are items enough."""
    most = max(1, min(MAX_TASK, -(-len(misses) // spread)))
    tasks, task, pixels = [], [], 0
    for miss in misses:
        task.append(miss)
        pixels += _pixels(miss[0])
        if pixels >= TASK_PIXELS or len(task) >= most:
            tasks.append(task)
            task, pixels = [], 0
    if task:
        tasks.append(task)
    return tasks


def _pixels(item: Item) -> int:
    size = known_size(item)
    return size[0] * size[1] if size is not None and min(size) > 0 else UNKNOWN_PIXELS
