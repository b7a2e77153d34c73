"""The per-image result cache: keys from (step, input fingerprint), rows in the `results` table."""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Protocol

from captionary.core.children import children_json, parse_children
from captionary.core.hashing import KEY_PREFIX, cache_key, canonical_json
from captionary.core.item import as_run
from captionary.core.outcome import Outcome

if TYPE_CHECKING:
    from captionary.core.item import Item


class Step(Protocol):
    """What the cache needs of a step (`pipeline.step.Step` is one)."""

    name: str
    reads: tuple[str, ...]
    reads_image: bool

    @property
    def cache_prefix(self) -> bytes: ...


INSERT_RESULT = (
    "INSERT OR REPLACE INTO results (key, step, item, props, image, dropped, created, children) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "key, props, image, dropped, children"
_RECIPE_STEPS: dict = {}  # steps rebuilt from cached children, each distinct one once
_LOOKUP_CHUNK = 500


def item_key(step: Step, item: Item) -> bytes:
    """H(step prefix, current image hash (or item id if the step ignores pixels), values it reads)."""
    fingerprint = item.image_hash if step.reads_image else item.id
    reads = canonical_json([item.props.get(name) for name in step.reads]) if step.reads else ""
    return cache_key(step.cache_prefix, fingerprint, reads)


PRELOAD_LIMIT = 200_000
"""A step with at most this many cached results is read in one range scan instead of key by key."""


class StepCache:
    """Cached outcomes of one configured step, for bulk lookups from the driver.

    Reads every result of the step in one sequential range scan when there are not too many (fast:
    no per-key index probes); otherwise looks keys up in batches.
    """

    def __init__(self, db: sqlite3.Connection, step: Step):
        self.db = db
        self.table: dict[bytes, tuple] | None = None
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM results WHERE key >= ? AND key < ? LIMIT ?",
            (*_key_range(step), PRELOAD_LIMIT + 1),
        ).fetchall()
        if len(rows) <= PRELOAD_LIMIT:
            self.table = {row[0]: row[1:] for row in rows}

    def lookup(self, keys: list[bytes]) -> dict[bytes, Outcome]:
        if self.table is None:
            return lookup(self.db, keys)
        found: dict[bytes, Outcome] = {}
        table = self.table
        for key in keys:
            row = table.get(key)
            if row is not None:
                found[key] = _outcome(*row)
        return found


def _key_range(step: Step) -> tuple[bytes, bytes]:
    """The keys of `step`'s results lie in [low, high): every key starts with the step's prefix."""
    low = step.cache_prefix[:KEY_PREFIX]
    if low == b"\xff" * KEY_PREFIX:
        return low, b"\xff" * (KEY_PREFIX + 17)
    return low, (int.from_bytes(low, "big") + 1).to_bytes(KEY_PREFIX, "big")


def has_results(db: sqlite3.Connection, step: Step) -> bool:
    """Whether any result of this configured step is cached (one index probe)."""
    query = "SELECT 1 FROM results WHERE key >= ? AND key < ? LIMIT 1"
    return db.execute(query, _key_range(step)).fetchone() is not None


def lookup(db: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, Outcome]:
    """Cached outcomes for the keys that have one (one query per 500 keys)."""
    found: dict[bytes, Outcome] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT {_COLUMNS} FROM results WHERE key IN ({marks})", chunk)
        for key, *values in rows:
            found[key] = _outcome(*values)
    return found


def _outcome(props: str | None, image: str | None, dropped: str | None, children: str | None) -> Outcome:
    return Outcome(
        decode_props(props) if props else None,
        image,
        dropped,
        children=parse_children(children, _RECIPE_STEPS) if children is not None else None,
    )


@functools.lru_cache(maxsize=8192)
def decode_props(text: str) -> dict:
    """Decoded result properties. Many results share one text (every resize to 1024x768), so decoding
    is memoised; the dict is shared and never mutated (Item.evolve copies)."""
    return json.loads(text)


def lookup_one(db: sqlite3.Connection, key: bytes) -> Outcome | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM results WHERE key = ?", (key,)).fetchone()
    return None if row is None else _outcome(*row[1:])


def result_row(key: bytes, step: Step, item: Item, outcome: Outcome) -> tuple:
    """The `results` row for a computed outcome (raises TypeError if props are not JSON-serialisable)."""
    props = canonical_json(outcome.props) if outcome.props else None
    children = children_json(outcome.children)
    return (key, step.name, item.id, props, outcome.image, outcome.dropped, time.time(), children)


def apply(item: Item, outcome: Outcome, step: Step) -> Item:
    """The item after a (kept) outcome of `step`. A derived image extends the item's recipe."""
    if outcome.props is None and outcome.image is None:
        return item
    new = item.evolve(outcome.props)
    if outcome.image is not None and outcome.image != item.image_hash:
        new.image_hash = outcome.image
        new._decoded = outcome.pixels
        if outcome.image.startswith("~"):
            read = {name: item.props.get(name) for name in step.reads}
            new.recipe = (*item.recipe, (as_run(step, item), read))
        else:  # a stored blob
            new.base, new.recipe = outcome.image, ()
    return new
