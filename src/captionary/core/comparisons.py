"""Pairwise answers of ranking tasks: one committed SQLite transaction per answer, like decisions.

An answer is keyed by (task, a, b) with a < b the two original item ids, so a change upstream keeps
it and a pair is never stored twice; `winner` is a or b, or None for "can't tell". The owner of the
`comparisons` table: the review app writes answers, the ranking stage reads them.
"""

from __future__ import annotations

import time

from captionary.core.db import HumanAnswers, transaction

Answer = tuple[str, str, str | None]
"""(a, b, winner) with a < b; winner a, b or None (can't tell)."""


def ordered(left: str, right: str) -> tuple[str, str]:
    return (left, right) if left < right else (right, left)


class ComparisonStore(HumanAnswers):
    """Reads and writes a workspace's comparisons. Safe to share between threads."""

    def answer(self, task: str, left: str, right: str, winner: str | None) -> float:
        """Store one answer in one committed transaction; returns its time."""
        if winner is not None and winner not in (left, right):
            raise ValueError("the winner must be one of the two items")
        a, b = ordered(left, right)
        at = time.time()
        with self.lock, transaction(self.db):
            self.db.execute(
                "INSERT OR REPLACE INTO comparisons VALUES (?, ?, ?, ?, ?)", (task, a, b, winner, at)
            )
        return at

    def undo(self, task: str, left: str, right: str) -> bool:
        """Forget one answer; True if there was one."""
        a, b = ordered(left, right)
        with self.lock:
            cursor = self.db.execute(
                "DELETE FROM comparisons WHERE task = ? AND a = ? AND b = ?", (task, a, b)
            )
            return cursor.rowcount > 0

    def answers(self, task: str) -> list[Answer]:
        """Every answer of the task, oldest first."""
        with self.lock:
            rows = self.db.execute(
                "SELECT a, b, winner FROM comparisons WHERE task = ? ORDER BY decided_at, a, b", (task,)
            ).fetchall()
        return [(a, b, winner) for a, b, winner in rows]

    def latest(self, task: str) -> tuple[int, float]:
        """(number of answers, time of the newest): what tells a reader something changed."""
        with self.lock:
            count, newest = self.db.execute(
                "SELECT count(*), coalesce(max(decided_at), 0) FROM comparisons WHERE task = ?", (task,)
            ).fetchone()
        return count, newest
