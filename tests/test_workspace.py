"""The workspace: SQLite in WAL mode with migrations, a content-addressed blob store, gc, read-back."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import sqlite3
import threading

import pytest
from PIL import Image

from captionary import Load, LoadManifest, LoadWebDataset, Resize, Save, Workspace, WorkspaceError
from captionary.cli import main
from captionary.core.blobpack import PACK_LIMIT
from captionary.core.db import MIGRATIONS
from test_webdataset_source import write_shard


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
        digest = ws.blobs.put(b"hello")  # small: packed in objects/pack.db
        assert digest == hashlib.sha256(b"hello").hexdigest()
        assert ws.blobs.put(b"hello") == digest
        assert list(ws.blobs.digests()) == [digest] and ws.blobs.get(digest) == b"hello"
        assert not ws.blobs.path(digest).exists()
        big = bytes(PACK_LIMIT + 1)  # a file of its own
        big_digest = ws.blobs.put(big)
        path = ws.blobs.path(big_digest)
        assert path.relative_to(ws_path / "objects").parts == (big_digest[:2], big_digest)
        stamp = path.stat().st_mtime_ns
        assert ws.blobs.put(big) == big_digest
        assert path.stat().st_mtime_ns == stamp
        assert sorted(ws.blobs.digests()) == sorted([digest, big_digest])
        assert list(ws.blobs.tmp.iterdir()) == []


def test_sources_are_never_modified_or_linked(photos, ws_path, tmp_path):
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in photos.rglob("*") if p.is_file()}
    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> Save(tmp_path / "out"), progress=False)
        for path, (data, mtime) in before.items():
            assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
            assert path.stat().st_nlink == 1
        item = next(ws.items())
        assert hashlib.sha256(ws.blobs.get(item.id)).hexdigest() == item.id
        stored = [p for p in (ws_path / "objects").rglob("*") if p.is_file()]
        assert stored and all(p.stat().st_nlink == 1 for p in stored)  # copies, never links


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


@pytest.fixture
def served(photos, tmp_path):
    """Three of the photos as PNG (bytes no other source here has) over HTTP on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()
    for i, jpg in enumerate(sorted(photos.rglob("*.jpg"))[:3]):
        Image.open(jpg).save(folder / f"{i}.png")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{httpd.server_address[1]}/{i}.png" for i in range(3)]
    httpd.shutdown()


def source_keys(ws: Workspace) -> set[str]:
    return {key for (key,) in ws.db.execute("SELECT path FROM source_files")}


def test_gc_prunes_source_records_no_run_can_use(photos, served, ws_path, tmp_path, capsys):
    """Records of local files that are gone (a folder's image, a manifest or its image, a shard) go;
    URL records go only when their item's bytes are gone; whatever the next run reads stays."""
    jpgs = sorted(photos.rglob("*.jpg"))
    listed = tmp_path / "listed"
    listed.mkdir()
    for i, jpg in enumerate(jpgs[:3]):
        shutil.copy(jpg, listed / f"{i}.jpg")
    local_manifest = listed / "meta.jsonl"
    local_manifest.write_text("".join(json.dumps({"image": f"{i}.jpg"}) + "\n" for i in range(3)))
    urls = tmp_path / "urls.jsonl"
    urls.write_text("".join(json.dumps({"image": url}) + "\n" for url in served))
    shard = tmp_path / "0000.tar"
    write_shard(shard, [(f"s{i}", {"jpg": p.read_bytes()}) for i, p in enumerate(jpgs[4:8])])
    gone_photo = photos / "dog" / "00.jpg"
    with Workspace(ws_path) as ws:
        for source in (
            Load(photos),
            LoadManifest(local_manifest),
            LoadManifest(urls),
            LoadWebDataset(str(shard)),
        ):
            assert not ws.run(source, progress=False).errors
        before = source_keys(ws)
        assert len(before) == 12 + 3 + 3 + 4 + 1  # the shard's "read without errors" marker too
        url_gone = f"{urls.resolve()}::{served[1]}"
        (url_digest,) = ws.db.execute("SELECT item FROM source_files WHERE path = ?", (url_gone,)).fetchone()
        gone_photo.unlink()
        (listed / "1.jpg").unlink()  # one of the local manifest's images
        shard.unlink()
        urls.unlink()  # a manifest of URLs that is gone: its records stay unless their bytes are gone
        ws.blobs.delete(url_digest)
        report = ws.gc()
        after = source_keys(ws)
        expected_gone = {
            str(gone_photo.resolve()),
            f"{local_manifest.resolve()}::{(listed / '1.jpg').resolve()}",
        }
        expected_gone |= {k for k in before if k.startswith("wds:")} | {url_gone}
        assert before - after == expected_gone
        assert report.pruned_sources == len(expected_gone) == 8

    local_manifest.unlink()  # now the manifest itself is gone: its remaining records go
    assert main(["gc", str(ws_path)]) == 0
    assert "pruned 2 source record(s)" in capsys.readouterr().out
    with Workspace(ws_path) as ws:
        assert not any(k.startswith(str(local_manifest.resolve())) for k in source_keys(ws))
        again = ws.run(Load(photos), progress=False)  # nothing the next run reads was pruned
    assert again.step("load").cached == 11 and again.step("load").computed == 0
