"""One background thread owns every write to the workspace database, in batched transactions."""

from __future__ import annotations

import collections
import sqlite3
import threading
from collections.abc import Iterable

from captionary.core.db import transaction

CACHE_KIB = 64 << 10
"""The writer connection's page cache (KiB): the pages a run's transactions keep updating."""
_STOP = object()
_SYNC = object()


class DbWriter:
    """Queue `(sql, rows)` writes; they are committed every `batch` writes or `interval` seconds.

    What was committed survives a kill at any moment; what was still queued is recomputed next run
    (at most `interval` seconds of work).

    Few, large transactions on a connection with a large page cache (`CACHE_KIB`): the keys are
    hashes, so a transaction dirties pages all over the tables, and each commit appends every page it
    dirtied to the write-ahead log. With SQLite's default 2 MiB cache and a commit per 2,000 writes, a
    first run of 20,000 thumbnails wrote 500 MB to the log and read 620 MB back (a transaction larger
    than the cache spills pages to the log before it commits, and rereads the leaves it updates); with
    64 MiB and a commit per 20,000 writes (or `interval`), 150-180 MB and 140-160 MB.

    A write is an append to a deque: it does not wake the writer thread. The thread wakes every
    `interval`, when `batch` writes are waiting, or for `sync` / `close`. Waking it for every row (a
    `queue.Queue` put notifies the waiting `get`) handed the GIL to it and back ~5 times per image on
    a first run.
    """

    def __init__(
        self, db: sqlite3.Connection, batch: int = 20_000, interval: float = 0.5, limit: int = 100_000
    ):
        self.db = db
        db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.batch = batch
        self.interval = interval
        self.limit = limit  # writes waiting before a writer waits for the thread (backpressure)
        self.pending: collections.deque = collections.deque()
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self._room = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="captionary-db-writer", daemon=True)
        self._thread.start()

    def write(self, sql: str, row: tuple) -> None:
        self._raise()
        self._put((sql, [row]))

    def write_many(self, sql: str, rows: Iterable[tuple]) -> None:
        rows = list(rows)
        if rows:
            self._raise()
            self._put((sql, rows))

    def sync(self) -> None:
        """Return once everything queued so far is committed (for a write that must precede a file
        operation, such as recording a shard before renaming it into place)."""
        done = threading.Event()
        self._raise()
        self.pending.append((_SYNC, done))
        self._wake.set()
        while not done.wait(0.1):
            if not self._thread.is_alive():
                break
        self._raise()

    def close(self) -> None:
        self.pending.append((_STOP, None))
        self._wake.set()
        self._thread.join()
        self._raise()

    def _put(self, entry: tuple) -> None:
        self.pending.append(entry)  # deque appends are atomic: no lock, no wake-up
        waiting = len(self.pending)
        if waiting >= self.batch:
            self._wake.set()
        while waiting >= self.limit and self._thread.is_alive():  # the thread is behind: wait for it
            self._room.clear()
            self._wake.set()
            self._room.wait(0.1)
            waiting = len(self.pending)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            batch: list[tuple[str, list]] = []
            stop = False
            while self.pending and not stop:
                sql, payload = self.pending.popleft()
                if sql is _STOP:
                    stop = True
                elif sql is _SYNC:
                    self._commit(batch)
                    batch = []
                    payload.set()
                else:
                    batch.append((sql, payload))
            self._commit(batch)
            self._room.set()
            if stop:
                return

    def _commit(self, pending: list[tuple[str, list]]) -> None:
        if not pending or self.error is not None:
            return
        try:
            with transaction(self.db):
                for sql, rows in pending:
                    self.db.executemany(sql, rows)
        except BaseException as exc:
            self.error = exc
