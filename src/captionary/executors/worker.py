"""Per-item work: run a chain of map/filter steps on one item, in this process or a pool worker.

Inside a chain the decoded image stays in memory from step to step (pixels are decoded once per
chain); processes exchange items (ids, blob hashes, properties), never pixels.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from captionary.core.blobstore import BlobStore, open_blob_store
from captionary.core.cache import apply, item_key, lookup_one
from captionary.core.db import connect
from captionary.core.hashing import KEY_PREFIX
from captionary.core.item import NO_IMAGE_ERROR, Item, sharing_decodes
from captionary.core.outcome import Outcome
from captionary.errors import describe_error
from captionary.pipeline.step import PerItemStep

Event = tuple[int, bytes, Outcome | None, str | None, bool]
"""(position in chain, cache key, outcome, error reason, came from cache)"""


def advance(
    steps: Sequence[PerItemStep],
    item: Item,
    start: int,
    store: BlobStore,
    cached: Callable[[bytes], Outcome | None],
) -> tuple[Item, list[Event]]:
    """Run `steps[start:]` on `item` (step `start` is a known cache miss); stop at a drop or error."""
    events: list[Event] = []
    for position in range(start, len(steps)):
        step = steps[position]
        if step.reads_image and not item.has_image:
            events.append((position, b"", None, f"{step.name} reads pixels: {NO_IMAGE_ERROR}", False))
            break
        key = item_key(step, item)
        if position > start and (hit := cached(key)) is not None:
            events.append((position, key, hit, None, True))
            if hit.dropped is not None:
                break
            item = apply(item, hit, step)
            continue
        try:
            outcome = step.compute(item, store)
        except Exception as exc:
            events.append((position, key, None, describe_error(exc), False))
            break
        item = apply(item, outcome, step) if outcome.dropped is None else item
        outcome.pixels = None  # the outcome goes back to the driver; pixels stay here
        events.append((position, key, outcome, None, False))
        if outcome.dropped is not None:
            break
    return item, events


# --- process pool side -------------------------------------------------------------------------
_worker: dict = {}


def init_worker(objects: Path, db_path: Path, chains: list[list[PerItemStep]]) -> None:
    """Open the blob store and, where this machine sees it, the workspace database: a Ray worker on
    another node may not (no shared file system). It then looks nothing up: the driver already
    resolved each item's first step, and later steps of the chain are computed instead of found."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops us
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    _worker["store"] = open_blob_store(objects)
    _worker["db"] = connect(db_path, readonly=True) if Path(db_path).is_file() else None
    _worker["chains"] = chains


def _exit_with_parent() -> None:
    """A killed driver (SIGKILL) cannot stop its pool: each worker leaves when its parent is gone."""
    import multiprocessing
    import multiprocessing.connection

    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)


def run_task(
    chain: int,
    batch: list[tuple[Item, int]],
    render: Renderer | None = None,
    cold: frozenset[bytes] = frozenset(),
) -> list[tuple[Item, list[Event]]]:
    """`cold`: cache prefixes (`KEY_PREFIX` bytes) of steps with nothing cached: not looked up."""
    store: BlobStore = _worker["store"]
    db: sqlite3.Connection | None = _worker["db"]
    steps = _worker["chains"][chain]

    def cached(key: bytes) -> Outcome | None:
        return lookup_one(db, key) if db is not None and key[:KEY_PREFIX] not in cold else None

    with sharing_decodes():  # children of one parent in this task decode it once
        return [_run_one(steps, item, start, store, cached, render) for item, start in batch]


def _run_one(
    steps: Sequence[PerItemStep],
    item: Item,
    start: int,
    store: BlobStore,
    cached: Callable[[bytes], Outcome | None],
    render: Renderer | None,
) -> tuple[Item, list[Event]]:
    item.attach(store)
    done, events = advance(steps, item, start, store, cached)
    if done is not item:
        item.drop_pixels()  # the original's pixels: a task holding several would churn memory
    if render is not None and done._decoded is not None:
        done.rendered = render.render(done)  # encode for the sink while the pixels are here
    done.drop_pixels()  # they do not cross processes anyway
    return done, events


class Renderer(Protocol):
    """A sink's encoder, run in the worker right after the chain that made the pixels."""

    def render(self, item: Item) -> tuple[str, bytes] | None: ...
