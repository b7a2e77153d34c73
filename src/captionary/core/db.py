"""The workspace database: SQLite in WAL mode, schema kept by a list of migrations."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from captionary.errors import WorkspaceError


def _statements(db: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated statements inside the caller's transaction (executescript would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _v1(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        -- one row per distinct original image, id = sha256 of its bytes = its blob name
        CREATE TABLE items (
            id TEXT PRIMARY KEY, width INTEGER, height INTEGER, format TEXT, mode TEXT,
            nbytes INTEGER, added REAL
        ) WITHOUT ROWID;
        -- what a source read at a path, so an unchanged file is never read twice
        CREATE TABLE source_files (
            path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, item TEXT, name TEXT, props TEXT,
            format TEXT
        ) WITHOUT ROWID;
        -- the per-image cache, one row per (step config, input fingerprint)
        CREATE TABLE results (
            key BLOB PRIMARY KEY, step TEXT NOT NULL, item TEXT, props TEXT, image TEXT,
            dropped TEXT, created REAL
        ) WITHOUT ROWID;
        CREATE INDEX results_item ON results(item);
        -- the files a sink wrote, so it rewrites only what changed and deletes only its own files
        CREATE TABLE outputs (
            sink TEXT NOT NULL, path TEXT NOT NULL, item TEXT, digest TEXT, size INTEGER, mtime_ns INTEGER,
            PRIMARY KEY (sink, path)
        ) WITHOUT ROWID;
        -- each item's state after the latest run that reached it (for notebooks, review, loader)
        -- image is a blob hash, or a derived id (~...) made by applying recipe (JSON steps) to base
        CREATE TABLE item_state (
            item TEXT PRIMARY KEY, image TEXT, source TEXT, name TEXT, props TEXT,
            dropped_by TEXT, reason TEXT, format TEXT, base TEXT, recipe TEXT, run INTEGER
        ) WITHOUT ROWID;
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY, started REAL, finished REAL, status TEXT, pipeline TEXT,
            executor TEXT
        );
        CREATE TABLE run_steps (
            run INTEGER, idx INTEGER, name TEXT, n_in INTEGER, n_out INTEGER, computed INTEGER,
            cached INTEGER, dropped INTEGER, failed INTEGER, PRIMARY KEY (run, idx)
        );
        CREATE TABLE errors (run INTEGER, item TEXT, step TEXT, reason TEXT, source TEXT);
        CREATE INDEX errors_run ON errors(run);
        """,
    )


def _v2(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        -- review tasks (one per human step task name) and the items each was asked about
        CREATE TABLE tasks (name TEXT PRIMARY KEY, kind TEXT NOT NULL, config TEXT, updated REAL);
        CREATE TABLE task_items (
            task TEXT NOT NULL, item TEXT NOT NULL, position INTEGER NOT NULL, image TEXT, name TEXT,
            props TEXT, base TEXT, recipe TEXT, run INTEGER, PRIMARY KEY (task, item)
        ) WITHOUT ROWID;
        CREATE INDEX task_items_position ON task_items(task, position);
        -- human decisions, keyed by task and original item id (never by a derived image)
        CREATE TABLE decisions (
            task TEXT NOT NULL, item TEXT NOT NULL, value TEXT NOT NULL, decided_at REAL NOT NULL,
            PRIMARY KEY (task, item)
        ) WITHOUT ROWID;
        CREATE INDEX decisions_time ON decisions(task, decided_at);
        -- review-app renditions (WebP blobs) of an image (blob hash or derived id) at a size
        CREATE TABLE thumbnails (
            image TEXT NOT NULL, size INTEGER NOT NULL, blob TEXT NOT NULL, width INTEGER, height INTEGER,
            PRIMARY KEY (image, size)
        ) WITHOUT ROWID;
        """,
    )


def _v3(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        -- what a batch step reported for the run (JSON: model requests and tokens), for `status`
        ALTER TABLE run_steps ADD COLUMN usage TEXT;
        -- the review app pages through items by name
        CREATE INDEX item_state_name ON item_state(name, item);
        """,
    )


def _v4_fanout_origins(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        -- a fan-out step's cached children (JSON list of child specs), see core/children.py
        ALTER TABLE results ADD COLUMN children TEXT;
        -- where the items of a run with several sources came from (one row per item and origin)
        -- (position: the source's place in the pipeline, so origins read back in order)
        CREATE TABLE item_origins (
            item TEXT NOT NULL, position INTEGER NOT NULL, step TEXT NOT NULL, source TEXT NOT NULL,
            run INTEGER, PRIMARY KEY (item, position, source)
        ) WITHOUT ROWID;
        """,
    )


def _web_crawls(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        -- a web source's walk through a site's search results (load_booru), so a crawl resumes where
        -- it stopped: the next page to ask for, and whether the listing is exhausted
        CREATE TABLE web_crawls (
            query TEXT PRIMARY KEY, cursor TEXT, exhausted INTEGER NOT NULL, updated REAL
        ) WITHOUT ROWID;
        -- every post the walk listed, in listing order (JSON: tags by category, rating, file URLs, md5)
        CREATE TABLE web_posts (
            query TEXT NOT NULL, post TEXT NOT NULL, position INTEGER NOT NULL, data TEXT NOT NULL,
            PRIMARY KEY (query, post)
        ) WITHOUT ROWID;
        CREATE INDEX web_posts_position ON web_posts(query, position);
        """,
    )


def _departed(db: sqlite3.Connection) -> None:
    """Items that left the workspace: the first complete run whose sources did not see them, and
    when (`gc` frees them after `--keep-runs` / `--keep-days`). In an existing workspace, items no
    source has on record and its latest complete run did not reach count as departed from that run."""
    _statements(
        db,
        """
        CREATE TABLE departed (item TEXT PRIMARY KEY, run INTEGER NOT NULL, at REAL NOT NULL) WITHOUT ROWID;
        INSERT INTO departed
            SELECT id, (SELECT max(id) FROM runs WHERE status = 'completed'),
                CAST(strftime('%s', 'now') AS REAL) FROM items
            WHERE EXISTS (SELECT 1 FROM runs WHERE status = 'completed')
            AND id NOT IN (SELECT item FROM item_state)
            AND id NOT IN (SELECT item FROM source_files WHERE item IS NOT NULL)
        """,
    )


def _comparisons(db: sqlite3.Connection) -> None:
    _statements(
        db,
        """
        -- pairwise answers of a ranking task (human_rank), keyed by task and the two original item
        -- ids (a < b): winner is a or b, NULL for "can't tell"
        CREATE TABLE comparisons (
            task TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL, winner TEXT, decided_at REAL NOT NULL,
            PRIMARY KEY (task, a, b)
        ) WITHOUT ROWID;
        CREATE INDEX comparisons_time ON comparisons(task, decided_at);
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1,
    _v2,
    _v3,
    _v4_fanout_origins,
    _web_crawls,
    _departed,
    _comparisons,
]
"""Schema migrations in order; `PRAGMA user_version` counts those applied. Append, never edit."""


def db_text(text: str) -> str:
    """Text safe to store: bytes of a file name that are not UTF-8 (a Latin-1 name on Linux) are
    written as \\xNN, the same way every time."""
    if text.isascii():  # no surrogates: as it is (most names; a cached run asks for every path)
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    else:
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=30000")
    return db


def migrate(db: sqlite3.Connection) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > len(MIGRATIONS):
        raise WorkspaceError(
            f"workspace schema version {version} is newer than this captionary knows "
            f"({len(MIGRATIONS)}); upgrade captionary"
        )
    for number in range(version, len(MIGRATIONS)):
        with transaction(db):
            MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version={number + 1}")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` (the write lock at once, so no deadlock upgrading a read) ... `COMMIT`, or
    `ROLLBACK` on any exception (Ctrl-C included). For connections opened by `connect`."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class HumanAnswers:
    """A connection of its own for human answers (decisions, comparisons): a click is one committed
    transaction, with `synchronous=FULL` when `durable` (it survives a power cut, not only a killed
    process). Safe to share between threads."""

    def __init__(self, db_path: Path, *, durable: bool = True):
        self.db = connect(db_path)
        if durable:
            self.db.execute("PRAGMA synchronous=FULL")
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def write(self, sql: str, rows: Sequence[tuple]) -> None:
        with self.lock, transaction(self.db):
            self.db.executemany(sql, rows)

    def read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.db.execute(sql, params).fetchall()
