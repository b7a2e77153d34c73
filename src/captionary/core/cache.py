"""The per-image result cache: keys from (step, input fingerprint), rows in the `results` table."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING

from captionary.core.hashing import cache_key, canonical_json
from captionary.pipeline.step import Outcome

if TYPE_CHECKING:
    from captionary.core.item import Item
    from captionary.pipeline.step import Step

INSERT_RESULT = "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)"
_LOOKUP_CHUNK = 500


def item_key(step: Step, item: Item) -> bytes:
    """H(step prefix, current image hash (or item id if the step ignores pixels), values it reads)."""
    fingerprint = item.image_hash if step.reads_image else item.id
    reads = canonical_json([item.props.get(name) for name in step.reads]) if step.reads else ""
    return cache_key(step.prefix, fingerprint, reads)


def lookup(db: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, Outcome]:
    """Cached outcomes for the keys that have one (one query per 500 keys)."""
    found: dict[bytes, Outcome] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        chunk = keys[start : start + _LOOKUP_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT key, props, image, dropped FROM results WHERE key IN ({marks})", chunk)
        for key, props, image, dropped in rows:
            found[key] = Outcome(json.loads(props) if props else None, image, dropped)
    return found


def lookup_one(db: sqlite3.Connection, key: bytes) -> Outcome | None:
    row = db.execute("SELECT props, image, dropped FROM results WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    props, image, dropped = row
    return Outcome(json.loads(props) if props else None, image, dropped)


def result_row(key: bytes, step: Step, item: Item, outcome: Outcome) -> tuple:
    """The `results` row for a computed outcome (raises TypeError if props are not JSON-serialisable)."""
    props = canonical_json(outcome.props) if outcome.props else None
    return (key, step.name, item.id, props, outcome.image, outcome.dropped, time.time())


def apply(item: Item, outcome: Outcome) -> Item:
    """The item after a (kept) outcome."""
    if outcome.props is None and outcome.image is None:
        return item
    return item.evolve(outcome.image, outcome.props)
