"""Human decisions: one committed SQLite transaction per decision, on a connection of their own.

Decisions are keyed by (task, item id), the id of the original bytes, so a change upstream (a new
resize, a new caption model) never throws human work away. Machine results go through the run's
batching DbWriter; decisions never do: the UI is told "saved" only after the commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from captionary.core.db import HumanAnswers, transaction
from captionary.core.hashing import canonical_json

TASK_KINDS = ("filter", "tag", "caption", "rank")


@dataclass(frozen=True, slots=True)
class TaskItem:
    """An item a task asks about, as the review app shows it."""

    item: str
    position: int
    image: str
    name: str
    props: dict[str, Any]
    base: str | None = None
    recipe: str | None = None


class DecisionStore(HumanAnswers):
    """Reads and writes tasks, task items and decisions. Safe to share between threads."""

    # --- tasks -------------------------------------------------------------------------------------
    def register_task(self, name: str, kind: str, config: dict[str, Any]) -> None:
        if kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {kind!r} (valid: {', '.join(TASK_KINDS)})")
        self.write(
            "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?)",
            [(name, kind, canonical_json(config), time.time())],
        )

    def tasks(self) -> list[dict[str, Any]]:
        rows = self.read(
            "WITH latest AS (SELECT task, item FROM task_items i WHERE run IS "
            " (SELECT max(run) FROM task_items j WHERE j.task = i.task)) "
            "SELECT t.name, t.kind, t.config, "
            "(SELECT count(*) FROM latest i WHERE i.task = t.name), "
            "(SELECT count(*) FROM latest i JOIN decisions d ON d.task = i.task AND d.item = i.item "
            " WHERE i.task = t.name) FROM tasks t ORDER BY t.updated DESC"
        )
        return [
            {"name": n, "kind": k, "config": json.loads(c or "{}"), "total": total, "decided": decided}
            for n, k, c, total, decided in rows
        ]

    def task(self, name: str) -> dict[str, Any] | None:
        rows = self.read("SELECT kind, config FROM tasks WHERE name = ?", (name,))
        if not rows:
            return None
        kind, config = rows[0]
        return {"name": name, "kind": kind, "config": json.loads(config or "{}")}

    def register_items(
        self, task: str, items: Iterable[TaskItem], run: int | None, seen: Sequence[str] = ()
    ) -> None:
        """Add or update a task's items (new ones go to the end; known ones keep their place) and stamp
        them and the unchanged items `seen` with `run`: the app shows the items of the latest run."""
        with self.lock, transaction(self.db):
            for start in range(0, len(seen), 500):
                chunk = list(seen[start : start + 500])
                marks = ",".join("?" * len(chunk))
                self.db.execute(
                    f"UPDATE task_items SET run = ? WHERE task = ? AND item IN ({marks})",
                    (run, task, *chunk),
                )
            (end,) = self.db.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM task_items WHERE task = ?", (task,)
            ).fetchone()
            for it in items:
                self.db.execute(
                    "INSERT INTO task_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (task, item) DO UPDATE SET image = excluded.image, "
                    "name = excluded.name, props = excluded.props, base = excluded.base, "
                    "recipe = excluded.recipe, run = excluded.run",
                    (
                        task,
                        it.item,
                        end,
                        it.image,
                        it.name,
                        canonical_json(it.props),
                        it.base,
                        it.recipe,
                        run,
                    ),
                )
                end += 1

    def items(self, task: str, after: int = -1, limit: int = -1) -> list[TaskItem]:
        """The items the latest run that reached the task asked about, in the order they came."""
        rows = self.read(
            "SELECT item, position, image, name, props, base, recipe FROM task_items "
            "WHERE task = ? AND position > ? AND run IS (SELECT max(run) FROM task_items WHERE task = ?) "
            "ORDER BY position LIMIT ?",
            (task, after, task, limit),
        )
        return [TaskItem(i, p, img, n, json.loads(props or "{}"), b, r) for i, p, img, n, props, b, r in rows]

    def has_item(self, task: str, item: str) -> bool:
        return bool(self.read("SELECT 1 FROM task_items WHERE task = ? AND item = ?", (task, item)))

    # --- decisions ---------------------------------------------------------------------------------
    def decide(self, task: str, item: str, value: Any) -> float:
        """Store one decision in one committed transaction; returns its time."""
        decided_at = time.time()
        self.write(
            "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?)",
            [(task, item, canonical_json(value), decided_at)],
        )
        return decided_at

    def undo(self, task: str, item: str) -> None:
        self.write("DELETE FROM decisions WHERE task = ? AND item = ?", [(task, item)])

    def decisions(self, task: str, items: Sequence[str] | None = None) -> dict[str, Any]:
        """item id -> decided value, for the given items (all of the task's when None)."""
        if items is None:
            rows = self.read("SELECT item, value FROM decisions WHERE task = ?", (task,))
            return {item: json.loads(value) for item, value in rows}
        found: dict[str, Any] = {}
        for start in range(0, len(items), 500):
            chunk = list(items[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.read(
                f"SELECT item, value FROM decisions WHERE task = ? AND item IN ({marks})", (task, *chunk)
            )
            found.update((item, json.loads(value)) for item, value in rows)
        return found

    def decided_tasks(self) -> list[str]:
        """The tasks that have decisions, one index probe each (not a scan of every decision)."""
        tasks: list[str] = []
        while True:
            [(task,)] = self.read(
                "SELECT min(task) FROM decisions WHERE task > ?", (tasks[-1] if tasks else "",)
            )
            if task is None:
                return tasks
            tasks.append(task)

    def item_decisions(self, item: str) -> list[tuple[str, Any, float]]:
        """(task, value, decided_at) of every decision about one item, by task."""
        rows = self.read(
            "SELECT task, value, decided_at FROM decisions WHERE item = ? ORDER BY task", (item,)
        )
        return [(task, json.loads(value), at) for task, value, at in rows]

    def decided_since(self, task: str, since: float) -> list[tuple[str, Any, float]]:
        """(item, value, decided_at) of decisions made at or after `since` (a time.time())."""
        rows = self.read(
            "SELECT item, value, decided_at FROM decisions WHERE task = ? AND decided_at >= ?",
            (task, since),
        )
        return [(item, json.loads(value), at) for item, value, at in rows]


def task_decisions(read: Callable[[str, tuple], list[tuple]], task: str) -> list[tuple[str, str]]:
    """(item, value as JSON) of a task's decisions, by item, through any reader (`Workspace.query`)."""
    return read("SELECT item, value FROM decisions WHERE task = ? ORDER BY item", (task,))
