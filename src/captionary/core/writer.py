"""One background thread owns every write to the workspace database, in batched transactions."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Iterable

from captionary.core.db import transaction

_STOP = object()
_SYNC = object()


class DbWriter:
    """Queue `(sql, rows)` writes; they are committed every `batch` rows or `interval` seconds.

    What was committed survives a kill at any moment; what was still queued is recomputed next run.
    """

    def __init__(self, db: sqlite3.Connection, batch: int = 2000, interval: float = 0.5):
        self.db = db
        self.batch = batch
        self.interval = interval
        self.queue: queue.Queue = queue.Queue(maxsize=10000)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="captionary-db-writer", daemon=True)
        self._thread.start()

    def write(self, sql: str, row: tuple) -> None:
        self._raise()
        self.queue.put((sql, [row]))

    def write_many(self, sql: str, rows: Iterable[tuple]) -> None:
        rows = list(rows)
        if rows:
            self._raise()
            self.queue.put((sql, rows))

    def sync(self) -> None:
        """Return once everything queued so far is committed (for a write that must precede a file
        operation, such as recording a shard before renaming it into place)."""
        done = threading.Event()
        self._raise()
        self.queue.put((_SYNC, done))
        while not done.wait(0.1):
            if not self._thread.is_alive():
                break
        self._raise()

    def close(self) -> None:
        self.queue.put((_STOP, None))
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        pending: list[tuple[str, list]] = []
        count = 0
        last_commit = time.monotonic()
        while True:
            try:
                sql, payload = self.queue.get(timeout=self.interval)
            except queue.Empty:
                sql, payload = None, None
            stop = sql is _STOP
            synced = payload if sql is _SYNC else None
            if synced is not None:
                sql = None
            if sql is not None and not stop:
                pending.append((sql, payload))
                count += len(payload)
            due = time.monotonic() - last_commit >= self.interval
            if stop or synced or count >= self.batch or (pending and (due or sql is None)):
                try:
                    self._commit(pending)
                except BaseException as exc:
                    self.error = exc
                pending, count, last_commit = [], 0, time.monotonic()
            if synced is not None:
                synced.set()
            if stop:
                return

    def _commit(self, pending: list[tuple[str, list]]) -> None:
        if not pending or self.error is not None:
            return
        with transaction(self.db):
            for sql, rows in pending:
                self.db.executemany(sql, rows)
