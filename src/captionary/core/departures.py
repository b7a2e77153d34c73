"""Items that left the workspace (the `departed` table's one owner).

An item departs when a complete run did not see it although one of the run's sources has it on
record (its file was deleted from the folder, its row from the manifest), or, found by `gc`, when no
source has it on record any more (gc pruned the record of a file that is gone) and the latest
complete run did not reach it. Another pipeline that reads other
sources in the same workspace does not make it depart. It comes back if a later run sees it again.
`gc` frees a departed item once `keep_runs` complete runs have not seen it and it left at least
`keep_days` ago: its original, its cached results (and the arrays and renditions only they used),
its review-task rows. Human decisions are kept (keyed by the original's id, they apply again if
the image ever comes back).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from captionary.core.db import transaction

BATCH = 500


@dataclass
class Departed:
    items: list[str]  # the departed items gc may free now
    decisions_kept: int  # human decisions about them, which stay


def departure_rows(
    covered: set[str], seen: set[str], departed: Iterable[str], run_id: int, now: float | None = None
) -> tuple[list[tuple], list[tuple]]:
    """After a complete run: (rows to insert into `departed`: items on record under the run's sources
    that it did not see and that had not already left; rows to delete: items that had left and were
    seen again)."""
    now = time.time() if now is None else now
    departed = set(departed)
    gone = [(item, run_id, now) for item in covered - seen - departed]
    back = [(item,) for item in departed & seen]
    return gone, back


ORPHANS_DEPART = """
    INSERT OR IGNORE INTO departed
    SELECT id, (SELECT max(id) FROM runs WHERE status = 'completed'), ? FROM items
    WHERE EXISTS (SELECT 1 FROM runs WHERE status = 'completed')
    AND id NOT IN (SELECT item FROM item_state)
    AND id NOT IN (SELECT item FROM source_files WHERE item IS NOT NULL)
"""


def mark_orphans(db: sqlite3.Connection) -> int:
    """Items no source has on record any more (gc pruned the records of their files, which are gone)
    and the latest complete run did not reach: departed as of that run. Run by gc after the pruning,
    not by every run (the query reads every item)."""
    with transaction(db):
        return db.execute(ORPHANS_DEPART, (time.time(),)).rowcount


INSERT_DEPARTED = "INSERT OR IGNORE INTO departed VALUES (?, ?, ?)"
DELETE_DEPARTED = "DELETE FROM departed WHERE item = ?"


def freeable(db: sqlite3.Connection, keep_runs: int, keep_days: float) -> Departed:
    """The departed items that `keep_runs` complete runs have not seen, gone `keep_days` or more."""
    runs = [row[0] for row in db.execute("SELECT id FROM runs WHERE status = 'completed' ORDER BY id")]
    if len(runs) < keep_runs:
        return Departed([], 0)
    since = runs[-keep_runs] if keep_runs > 0 else float("inf")  # it left at or before this run
    cutoff = time.time() - keep_days * 86400
    items = [
        row[0]
        for row in db.execute(
            "SELECT item FROM departed WHERE run <= ? AND at <= ? "
            "AND item NOT IN (SELECT item FROM item_state)",
            (since, cutoff),
        )
    ]
    decisions = 0
    for chunk in _chunks(items):
        marks = ",".join("?" * len(chunk))
        (count,) = db.execute(f"SELECT count(*) FROM decisions WHERE item IN ({marks})", chunk).fetchone()
        decisions += count
    return Departed(items, decisions)


def forget(db: sqlite3.Connection, items: list[str]) -> None:
    """Delete the rows that hold departed `items` (not their decisions); their blobs are then
    unreferenced and the blob sweep frees them."""
    with transaction(db):
        for chunk in _chunks(items):
            marks = ",".join("?" * len(chunk))
            images = [
                row[0]
                for row in db.execute(
                    f"SELECT DISTINCT image FROM results WHERE item IN ({marks}) AND image IS NOT NULL", chunk
                )
            ]
            for part in _chunks([*chunk, *images]):
                db.execute(f"DELETE FROM thumbnails WHERE image IN ({','.join('?' * len(part))})", part)
            for table, column in (
                ("results", "item"),
                ("task_items", "item"),
                ("item_origins", "item"),
                ("source_files", "item"),
                ("items", "id"),
                ("departed", "item"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)


def _chunks(values: list[str]) -> Iterable[tuple[str, ...]]:
    for start in range(0, len(values), BATCH):
        yield tuple(values[start : start + BATCH])
