"""RunContext: what every stage of one run shares (workspace, writer, counters, errors, stop flag)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from captionary.core import item_state
from captionary.core.db import db_text
from captionary.core.departures import DELETE_DEPARTED, INSERT_DEPARTED, departure_rows
from captionary.core.hashing import canonical_json
from captionary.core.recipes import recipe_json
from captionary.executors.summary import StepStats

if TYPE_CHECKING:
    from captionary.core.item import Item
    from captionary.core.workspace import Workspace
    from captionary.core.writer import DbWriter

INSERT_ERROR = "INSERT INTO errors VALUES (?, ?, ?, ?, ?)"


__all__ = ["RunContext", "Stopped", "recipe_json"]


class Stopped(Exception):
    """Raised inside a stage when the run is stopping (Ctrl-C, too many errors, a crash elsewhere)."""


class RunContext:
    def __init__(
        self,
        ws: Workspace,
        run_id: int,
        writer: DbWriter,
        stats: list[StepStats],
        max_errors: int | None,
    ):
        self.ws = ws
        self.run_id = run_id
        self.writer = writer
        self.stats = stats
        self.max_errors = max_errors
        self.warm_workers: Callable[[], None] = lambda: None  # start the worker processes now
        self.after_kill = True  # a run before this one was killed (set by the executor; True: unknown)
        self.decodes_later = False  # an image step will decode every item's pixels (set by the executor)
        self.review_options: dict[str, Any] = {}  # host/port/announce for the review app a human step serves
        self.review_server: Any = None  # that app, once a human step started it (one per run)
        self.review_watch: Any = None  # what the app's run line reads (stages/human.py: RunWatch)
        self.devices_held: dict[int, str] = {}  # batch step index -> the accelerator its loaded model holds
        self.errors: list[dict] = []
        self.stop = threading.Event()
        self.abort_reason: str | None = None
        self.crash: BaseException | None = None
        self._lock = threading.Lock()
        self.seen: set[str] = set()
        self.covered: set[str] = set()  # items on record under the sources this run read (SourceRecords)
        self.origins: dict[str, list[tuple[int, str, str]]] = {}  # several sources: item -> origins
        """(source position, step label, source key) per source that produced the item."""
        self._previous = {row[0]: row[1:] for row in item_state.all_states(ws.query)}

    # --- outcomes of items ------------------------------------------------------------------------
    def fail(self, step_index: int, item: Item | None, reason: str, source: str | None = None) -> None:
        """Record one item's failure in one step; stop the run past `max_errors`."""
        name = self.stats[step_index].name
        item_id = item.id if item is not None else None
        source = source or (item.source if item is not None else None)
        reason, source = db_text(reason), source and db_text(source)  # messages may quote raw paths
        if item_id is not None:
            self.seen.add(item_id)
        with self._lock:
            self.stats[step_index].failed += 1
            self.errors.append({"item": item_id, "step": name, "reason": reason, "source": source})
            too_many = self.max_errors is not None and len(self.errors) > self.max_errors
        self.writer.write(INSERT_ERROR, (self.run_id, item_id, name, reason, source))
        if too_many and not self.stop.is_set():
            self.abort(f"more than {self.max_errors} errors (--max-errors {self.max_errors})")

    def drop(self, step_index: int, item: Item, reason: str) -> None:
        self._remember(item, self.stats[step_index].name, reason)

    def finish(self, item: Item) -> None:
        """An item reached the end of the pipeline."""
        self._remember(item, None, None)

    def _remember(self, item: Item, dropped_by: str | None, reason: str | None) -> None:
        self.seen.add(item.id)
        state = (
            item.image_hash,
            item.source,
            item.name,
            canonical_json(item.props),
            dropped_by,
            reason,
            item.format,
            item.base,
            recipe_json(item.recipe),
        )
        if self._previous.get(item.id) != state:
            self._previous[item.id] = state
            self.writer.write(item_state.UPSERT, (item.id, *state, self.run_id))

    def forget_unseen(self) -> None:
        """After a complete run: items it never reached are no longer part of the dataset; the origins
        of a run with several sources replace the previous ones. Items that left (on record under a
        source this run read, and not seen) are recorded as departed; `gc` frees them later."""
        stale = [(item,) for item in self._previous.keys() - self.seen]
        self.writer.write_many(item_state.DELETE, stale)
        before = set(self.ws.query("SELECT item, position, step, source FROM item_origins"))
        now = {(item, *origin) for item, found in self.origins.items() for origin in found}
        self.writer.write_many(
            "DELETE FROM item_origins WHERE item = ? AND position = ? AND source = ?",
            [(item, position, source) for item, position, _, source in before - now],
        )
        self.writer.write_many(
            "INSERT OR REPLACE INTO item_origins VALUES (?, ?, ?, ?, ?)",
            [(*row, self.run_id) for row in now - before],
        )
        departed = (row[0] for row in self.ws.query("SELECT item FROM departed"))
        gone, back = departure_rows(self.covered, self.seen, departed, self.run_id)
        self.writer.write_many(INSERT_DEPARTED, gone)
        self.writer.write_many(DELETE_DEPARTED, back)

    # --- stopping ------------------------------------------------------------------------------------
    def abort(self, reason: str) -> None:
        if self.abort_reason is None:
            self.abort_reason = reason
        self.stop.set()

    def crashed(self, exc: BaseException) -> None:
        if self.crash is None:
            self.crash = exc
        self.abort(f"internal error: {type(exc).__name__}: {exc}")

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped
