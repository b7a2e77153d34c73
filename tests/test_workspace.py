"""The workspace: SQLite in WAL mode with migrations, a content-addressed blob store, gc, read-back."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from captionary import Load, Resize, Save, Workspace, WorkspaceError
from captionary.core.db import MIGRATIONS


def test_database_is_wal_with_current_schema(ws_path):
    with Workspace(ws_path):
        pass
    con = sqlite3.connect(ws_path / "captionary.db")
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert con.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"items", "results", "outputs", "item_state", "runs", "run_steps", "errors"} <= tables


def test_a_newer_schema_is_refused(ws_path):
    with Workspace(ws_path):
        pass
    con = sqlite3.connect(ws_path / "captionary.db")
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.close()
    with pytest.raises(WorkspaceError, match="newer than this captionary knows"):
        Workspace(ws_path)


def test_blobs_are_content_addressed_and_written_once(ws_path):
    with Workspace(ws_path) as ws:
        digest = ws.blobs.put(b"hello")
        assert digest == hashlib.sha256(b"hello").hexdigest()
        path = ws.blobs.path(digest)
        assert path.relative_to(ws_path / "objects").parts == (digest[:2], digest)
        stamp = path.stat().st_mtime_ns
        assert ws.blobs.put(b"hello") == digest
        assert path.stat().st_mtime_ns == stamp
        assert list(ws.blobs.tmp.iterdir()) == []


def test_sources_are_never_modified_or_linked(photos, ws_path, tmp_path):
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in photos.rglob("*") if p.is_file()}
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Save(tmp_path / "out"), progress=False)
        for path, (data, mtime) in before.items():
            assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
            assert path.stat().st_nlink == 1
        item = next(ws.items())
        blob = ws.blobs.path(item.id)
        assert blob.stat().st_nlink == 1
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == item.id


def test_items_read_back_with_their_properties(photos, ws_path, tmp_path):
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Resize(max_edge=100) >> Save(tmp_path / "out"), progress=False, workers=0)
        items = {item.name: item for item in ws.items()}
        assert len(ws) == 12
    assert set(items) >= {"dog/00", "cat/04", "duck_toy/01"}
    dog = items["dog/00"]
    assert dog["caption"] == "a photo of sks dog"
    assert max(dog.width, dog.height) == 100
    assert dog.image_hash != dog.id  # resized
    assert dog.image.size == (dog.width, dog.height)  # decodes the stored blob
    assert dog.source.endswith("dog/00.jpg")


def test_gc_removes_only_unreferenced_blobs(photos, ws_path, tmp_path):
    pipeline = Load(photos) >> Resize(max_edge=100) >> Save(tmp_path / "out")
    with Workspace(ws_path) as ws:
        ws.run(pipeline, progress=False, workers=0)
        orphan = ws.blobs.put(b"nothing refers to me")
        thumbnail = ws.blobs.put(b"a review thumbnail")
        ws.db.execute("INSERT INTO thumbnails VALUES (?, 512, ?, 1, 1)", ("~some-image", thumbnail))
        report = ws.gc()
        assert report.removed == 1
        assert orphan not in ws.blobs
        assert thumbnail in ws.blobs
        assert report.kept == 13  # the originals and the thumbnail; resized images are not stored
        again = ws.run(pipeline, progress=False, workers=0)
    assert again.computed == 0


def test_one_run_at_a_time(photos, ws_path):
    with Workspace(ws_path) as ws, ws.run_lock(), pytest.raises(WorkspaceError, match="another run"):
        ws.run(Load(photos), progress=False)
