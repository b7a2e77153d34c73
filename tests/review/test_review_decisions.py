"""The decisions schema (migration 2 on an existing workspace) and the store's transactions."""

from __future__ import annotations

import sqlite3

import pytest

from captionary import ConfigError, HumanFilter, Workspace
from captionary.core.db import MIGRATIONS
from captionary.review.decisions import DecisionStore, TaskItem


def test_migration_2_upgrades_a_v1_workspace_and_keeps_its_data(tmp_path):
    path = tmp_path / "captionary.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO items (id, width) VALUES ('a', 7)")
    db.execute("COMMIT")
    db.close()
    with Workspace(tmp_path) as ws:
        assert ws.db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert ws.db.execute("SELECT id, width FROM items").fetchall() == [("a", 7)]
        tables = {row[0] for row in ws.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"tasks", "task_items", "decisions", "thumbnails"} <= tables


def test_each_decision_is_committed_and_visible_to_another_connection(tmp_path):
    with Workspace(tmp_path) as ws:
        store = DecisionStore(ws.db_path)
    assert store.db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: survives a power cut
    store.register_task("t", "filter", {"step": HumanFilter().describe()})
    store.register_items("t", [TaskItem("x" * 64, 0, "x" * 64, "x", {"caption": "c"})], run=1)
    store.register_items(
        "t", [TaskItem("y" * 64, 0, "y" * 64, "y", {}), TaskItem("x" * 64, 0, "~1", "x", {})], 2
    )
    assert [(i.item[:1], i.position, i.image) for i in store.items("t")] == [
        ("x", 0, "~1"),
        ("y", 1, "y" * 64),
    ]
    other = sqlite3.connect(tmp_path / "captionary.db")
    at = store.decide("t", "x" * 64, "keep")
    assert other.execute("SELECT value, decided_at FROM decisions").fetchall() == [('"keep"', at)]
    assert store.decided_since("t", at) == [("x" * 64, "keep", at)]
    assert store.decided_since("t", at + 1) == []
    store.decide("t", "x" * 64, "reject")  # a new answer replaces the old one
    assert store.decisions("t") == {"x" * 64: "reject"}
    store.undo("t", "x" * 64)
    assert other.execute("SELECT count(*) FROM decisions").fetchone() == (0,)
    assert store.tasks() == [
        {"name": "t", "kind": "filter", "config": store.task("t")["config"], "total": 2, "decided": 0}
    ]
    with pytest.raises(ValueError, match="unknown task kind 'score'"):
        store.register_task("r", "score", {})
    store.close()


def test_a_missing_review_extra_fails_when_the_step_is_built(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'captionary\[review\]'"):
        HumanFilter()
