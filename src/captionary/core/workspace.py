"""Workspace: a folder with `captionary.db` (SQLite, WAL) and `objects/` (the blob store)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionary.core import item_state
from captionary.core.arrays import load_array, referenced_digests
from captionary.core.blobpack import PACK_NAME
from captionary.core.blobstore import BLOBS_URL_FILE, workspace_blob_store
from captionary.core.children import child_blobs
from captionary.core.db import connect, migrate, transaction
from captionary.core.departures import forget, freeable, mark_orphans
from captionary.core.item import Item
from captionary.core.recipes import parse_recipe
from captionary.core.source_files import unusable_source_keys
from captionary.errors import WorkspaceError

DB_NAME = "captionary.db"

Runner = Callable[..., Any]
"""`runner(ws, pipeline, executor, **options) -> RunSummary`: how `Workspace.run` runs a pipeline."""
_runner: Runner | None = None


def set_runner(runner: Runner) -> None:
    """Register how pipelines run (the orchestration floor does, `captionary/orchestration.py`): core
    holds data and knows neither steps nor executors."""
    global _runner
    _runner = runner


@dataclass
class GcReport:
    removed: int
    freed_bytes: int
    kept: int
    pruned_sources: int = 0  # `source_files` records no run can use any more
    items_freed: int = 0  # items that left the workspace (`core/departures.py`), freed with their data
    decisions_kept: int = 0  # the human decisions about those items, which gc keeps


class Workspace:
    """Holds the cache, the human decisions and the run log of one dataset.

    with Workspace("dogs") as ws:
        ws.run(Load("photos") >> FilterBySize(min_edge=512) >> Save("out"))
        for item in ws.items():
            print(item.name, item.get("caption"))
    """

    def __init__(self, path: str | Path, blobs: str | None = None):
        """`blobs`: an fsspec URL (`s3://bucket/prefix`) for the blob store instead of `objects/`, so
        workers on other machines can read it; remembered in the workspace (`blobs.url`)."""
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise WorkspaceError(f"{self.path} exists and is not a folder")
        self.path.mkdir(parents=True, exist_ok=True)
        self.db_path = self.path / DB_NAME
        if blobs is not None:
            self._remember_blobs_url(blobs)
        self.blobs = workspace_blob_store(self.path)
        try:
            self.db = connect(self.db_path)
            migrate(self.db)
        except Exception as exc:
            if isinstance(exc, WorkspaceError):
                raise
            first: BaseException = exc
            while isinstance(first.__context__, Exception):  # e.g. a full disk, then a failed rollback
                first = first.__context__
            raise WorkspaceError(f"cannot open workspace database {self.db_path}: {first}") from exc

    def _remember_blobs_url(self, url: str) -> None:
        url_file = self.path / BLOBS_URL_FILE
        known = url_file.read_text().strip() if url_file.is_file() else None
        if known is not None and known != url.rstrip("/"):
            raise WorkspaceError(f"{self.path} keeps its blobs at {known}, not {url}")
        if known is None:
            objects = self.path / "objects"
            stored = any(objects.glob("??/*")) or (objects / PACK_NAME).exists()
            if (self.path / DB_NAME).exists() and stored:
                raise WorkspaceError(
                    f"{self.path} already stores its blobs in objects/; cannot move them to {url}"
                )
            url_file.write_text(url.rstrip("/") + "\n")

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        self.blobs.close()

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection (one per thread or process)."""
        return connect(self.db_path, readonly=True)

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Rows of one query on the workspace's own connection (this thread only)."""
        return self.db.execute(sql, params).fetchall()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """All rows of one query, on a fresh read-only connection (safe from any thread)."""
        db = self.reader()
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    # --- running -------------------------------------------------------------------------------
    def run(self, pipeline: Any, executor: str = "local", **options: Any) -> Any:
        """Run a pipeline (or one step) and return its `RunSummary`; options go to the executor
        (`max_errors`, `workers`, `progress`, ...)."""
        if _runner is None:
            raise WorkspaceError("no pipeline runner registered: import captionary first")
        return _runner(self, pipeline, executor, **options)

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Only one run at a time per workspace."""
        lock_path = self.path / ".lock"
        with open(lock_path, "a+") as handle:
            try:
                import fcntl
            except ImportError:  # Windows: no advisory lock
                yield
                return
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceError(f"another run is using workspace {self.path}") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- reading back ------------------------------------------------------------------------------
    def items(self, *, include_dropped: bool = False) -> Iterator[Item]:
        """The items of the latest complete run, with their properties as it left them.

        Dropped items come too on request, with `dropped_by` and `drop_reason` properties. An item
        that failed in the latest run keeps the state of the run before.
        """
        rows = item_state.all_states(self.query, include_dropped=include_dropped, order_by_name=True)
        origins = self._origins()
        steps: dict = {}
        for item_id, image, source, name, props, dropped_by, reason, format, base, recipe in rows:
            values = json.loads(props) if props else {}
            if dropped_by is not None:
                values = {**values, "dropped_by": dropped_by, "drop_reason": reason}
            if item_id in origins:
                values = {**values, "origins": origins[item_id]}
            yield Item(
                item_id,
                image,
                values,
                source,
                name,
                self.blobs,
                format or "",
                base,
                parse_recipe(recipe, steps),
            )

    def origins(self, item_id: str) -> list[dict[str, str]]:
        """Where an item came from in the latest complete run with several sources: `{"step", "source"}`
        per source that produced it (the same bytes from two sources are one item), in pipeline order."""
        return self._origins(item_id).get(item_id, [])

    def _origins(self, item_id: str | None = None) -> dict[str, list[dict[str, str]]]:
        sql = "SELECT item, step, source FROM item_origins"
        rows = self.query(
            sql + " WHERE item = ? ORDER BY position" if item_id else sql + " ORDER BY item, position",
            (item_id,) if item_id else (),
        )
        found: dict[str, list[dict[str, str]]] = {}
        for item, step, source in rows:
            found.setdefault(item, []).append({"step": step, "source": source})
        return found

    def __len__(self) -> int:
        return item_state.count_kept(self._read)

    def last_run(self) -> dict[str, Any] | None:
        """The latest run's per-step counts and errors (what `captionary status --json` prints)."""
        row = self.db.execute(
            "SELECT id, started, finished, status FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        run_id, started, finished, status = row
        steps = [
            {
                "name": n,
                "in": i,
                "out": o,
                "computed": c,
                "cached": k,
                "dropped": d,
                "failed": f,
                "usage": json.loads(u) if u else {},
            }
            for n, i, o, c, k, d, f, u in self.db.execute(
                "SELECT name, n_in, n_out, computed, cached, dropped, failed, usage FROM run_steps "
                "WHERE run = ? ORDER BY idx",
                (run_id,),
            )
        ]
        errors = [
            {"item": i, "step": s, "reason": r, "source": src}
            for i, s, r, src in self.db.execute(
                "SELECT item, step, reason, source FROM errors WHERE run = ? ORDER BY rowid", (run_id,)
            )
        ]
        return {
            "run": run_id,
            "status": status,
            "started": started,
            "finished": finished,
            "steps": steps,
            "errors": errors,
        }

    # --- housekeeping ------------------------------------------------------------------------------
    def referenced_blobs(self) -> set[str]:
        referenced: set[str] = set()
        for sql in (
            "SELECT id FROM items",
            "SELECT image FROM results WHERE image IS NOT NULL AND image NOT LIKE '~%'",
            "SELECT blob FROM thumbnails",  # the review app's, made once per image
        ):
            referenced.update(row[0] for row in self.db.execute(sql))
        referenced.update(item_state.stored_bases(self._read))
        for (children,) in self.db.execute("SELECT children FROM results WHERE children LIKE '%[%'"):
            referenced.update(child_blobs(children))  # generated pixels of fan-out children
        # arrays (embeddings) referenced from properties
        rows = self.db.execute('SELECT props FROM results WHERE props LIKE \'%"array":"%\'')
        referenced.update(referenced_digests(row[0] for row in rows))
        referenced.update(referenced_digests(item_state.props_with_arrays(self._read)))
        return referenced

    def load_array(self, ref: dict[str, Any]) -> Any:
        """The numpy array an array reference (a property value such as `clip_embedding`) names."""
        return load_array(self.blobs, ref)

    def gc(self, keep_runs: int = 1, keep_days: float = 0.0) -> GcReport:
        """Free the items that left the workspace (no source saw them in the last `keep_runs` complete
        runs, and they left at least `keep_days` ago): their originals, cached results and renditions,
        keeping human decisions. Then delete blobs that no database row refers to, and the ingest
        records (`source_files`) of local files that are gone or of items whose bytes are gone."""
        if keep_runs < 1 or keep_days < 0:
            raise ValueError(f"keep_runs must be >= 1 and keep_days >= 0; got {keep_runs}, {keep_days}")
        with self.run_lock():
            pruned = self._prune_source_files(set(self.blobs.digests()))
            mark_orphans(self.db)
            departed = freeable(self.db, keep_runs, keep_days)
            forget(self.db, departed.items)
            digests = set(self.blobs.digests())
            referenced = self.referenced_blobs()
            unreferenced = sorted(digests - referenced)
            kept = len(digests) - len(unreferenced)
            removed, freed = len(unreferenced), self.blobs.delete_many(unreferenced)
            self.blobs.clear_tmp()
            self.blobs.compact()
            return GcReport(removed, freed, kept, pruned, len(departed.items), departed.decisions_kept)

    def _prune_source_files(self, digests: set[str]) -> int:
        rows = self.db.execute("SELECT path, item FROM source_files").fetchall()
        stale = unusable_source_keys(rows, digests.__contains__)
        with transaction(self.db):
            self.db.executemany("DELETE FROM source_files WHERE path = ?", ((key,) for key in stale))
        return len(stale)

    def __repr__(self) -> str:
        return f"Workspace({os.fspath(self.path)!r})"
