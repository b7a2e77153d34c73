"""Workspace: a folder with `captionary.db` (SQLite, WAL) and `objects/` (the blob store)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captionary.core.arrays import load_array, referenced_digests
from captionary.core.blobstore import BLOBS_URL_FILE, workspace_blob_store
from captionary.core.db import connect, migrate
from captionary.core.item import Item
from captionary.errors import WorkspaceError
from captionary.pipeline.step import Step

if TYPE_CHECKING:
    from captionary.executors.summary import RunSummary
    from captionary.pipeline.pipeline import Pipeline

DB_NAME = "captionary.db"


@dataclass
class GcReport:
    removed: int
    freed_bytes: int
    kept: int
    pruned_sources: int = 0  # `source_files` records no run can use any more


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
            if (self.path / DB_NAME).exists() and any((self.path / "objects").glob("??/*")):
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

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection (one per thread or process)."""
        return connect(self.db_path, readonly=True)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """All rows of one query, on a fresh read-only connection (safe from any thread)."""
        db = self.reader()
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    # --- running -------------------------------------------------------------------------------
    def run(self, pipeline: Pipeline | Step, executor: str = "local", **options: Any) -> RunSummary:
        """Run a pipeline; options go to the executor (`max_errors`, `workers`, `progress`, ...)."""
        from captionary.executors import get_executor
        from captionary.pipeline.pipeline import Pipeline

        if not isinstance(pipeline, Pipeline):
            pipeline = Pipeline([pipeline])
        return get_executor(executor, **options).run(self, pipeline)

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
        sql = (
            "SELECT item, image, source, name, props, dropped_by, reason, format, base, recipe "
            "FROM item_state"
        )
        if not include_dropped:
            sql += " WHERE dropped_by IS NULL"
        rows = self.query(sql + " ORDER BY name")
        steps: dict[str, Step] = {}
        for item_id, image, source, name, props, dropped_by, reason, format, base, recipe in rows:
            values = json.loads(props) if props else {}
            if dropped_by is not None:
                values = {**values, "dropped_by": dropped_by, "drop_reason": reason}
            yield Item(
                item_id, image, values, source, name, self.blobs, format or "", base, _recipe(recipe, steps)
            )

    def __len__(self) -> int:
        (count,) = self.db.execute("SELECT count(*) FROM item_state WHERE dropped_by IS NULL").fetchone()
        return count

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
            "SELECT base FROM item_state WHERE base IS NOT NULL",
            "SELECT blob FROM thumbnails",  # the review app's, made once per image
        ):
            referenced.update(row[0] for row in self.db.execute(sql))
        for table in ("results", "item_state"):  # arrays (embeddings) referenced from properties
            rows = self.db.execute(f'SELECT props FROM {table} WHERE props LIKE \'%"array":"%\'')
            referenced.update(referenced_digests(row[0] for row in rows))
        return referenced

    def load_array(self, ref: dict[str, Any]) -> Any:
        """The numpy array an array reference (a property value such as `clip_embedding`) names."""
        return load_array(self.blobs, ref)

    def gc(self) -> GcReport:
        """Delete blobs that no database row refers to, and the ingest records (`source_files`) of
        local files that are gone or of items whose bytes are gone."""
        with self.run_lock():
            digests = set(self.blobs.digests())
            pruned = self._prune_source_files(digests)
            referenced = self.referenced_blobs()
            removed = freed = kept = 0
            for digest in sorted(digests):
                if digest in referenced:
                    kept += 1
                    continue
                freed += self.blobs.delete(digest)
                removed += 1
            self.blobs.clear_tmp()
            return GcReport(removed, freed, kept, pruned)

    def _prune_source_files(self, digests: set[str]) -> int:
        from captionary.sources.records import unusable_source_keys

        rows = self.db.execute("SELECT path, item FROM source_files").fetchall()
        stale = unusable_source_keys(rows, digests.__contains__)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany("DELETE FROM source_files WHERE path = ?", ((key,) for key in stale))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return len(stale)

    def __repr__(self) -> str:
        return f"Workspace({os.fspath(self.path)!r})"


def _recipe(text: str | None, steps: dict[str, Step]) -> tuple:
    """Rebuild a stored recipe's steps (each distinct step once) so derived images can be recomputed."""
    if not text:
        return ()
    from captionary.pipeline.registry import STEPS

    recipe = []
    for name, params, read in json.loads(text):
        key = name + json.dumps(params, sort_keys=True)
        if key not in steps:
            steps[key] = STEPS.get(name)(**params)
        recipe.append((steps[key], read))
    return tuple(recipe)
