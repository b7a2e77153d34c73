"""Small blobs are packed in `objects/pack.db` (one SQLite file) instead of a file each: visible to
other processes when `put` returns (or when a batch ends), never named by the database before they
are stored, freed by gc, and read back byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image

from captionary import Load, LoadHuggingFace, LoadManifest, LoadWebDataset, Save, Workspace
from captionary.core.blobpack import PACK_LIMIT
from captionary.core.blobstore import BlobStore
from captionary.sources.records import chunks
from conftest import REPO

READ = "import sys; from captionary.core.blobstore import BlobStore; "


def read_elsewhere(root: Path, digest: str) -> str:
    """What another process finds for `digest` in the store at `root`: its sha256, or 'missing'."""
    code = READ + (
        "import hashlib; s = BlobStore(sys.argv[1]); d = sys.argv[2]; "
        "print(hashlib.sha256(s.get(d)).hexdigest() if d in s else 'missing')"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), digest], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def files_in(root: Path) -> list[Path]:
    """Blob files proper: not the pack (and its WAL), not temp files."""
    return [p for p in root.rglob("*") if p.is_file() and p.parent != root and p.parent.name != "tmp"]


def test_small_blobs_are_packed_large_ones_are_files_and_both_read_back(tmp_path):
    store = BlobStore(tmp_path / "objects")
    small = os.urandom(PACK_LIMIT)
    large = os.urandom(PACK_LIMIT + 1)
    small_digest, large_digest = store.put(small), store.put(large)
    assert [p.name for p in files_in(tmp_path / "objects")] == [large_digest]
    assert store.get(small_digest) == small and store.get(large_digest) == large
    assert small_digest in store and large_digest in store and "0" * 64 not in store
    assert list(store.digests()) == sorted([small_digest, large_digest])
    assert store.delete(small_digest) == len(small)
    assert small_digest not in store and list(store.digests()) == [large_digest]
    store.close()


def test_a_put_blob_is_readable_by_another_process_as_soon_as_put_returns(tmp_path):
    store = BlobStore(tmp_path / "objects")
    digest = store.put(b"thumbnail bytes")
    assert read_elsewhere(tmp_path / "objects", digest) == digest
    store.close()


def test_a_batch_is_seen_here_at_once_and_by_other_processes_when_it_ends(tmp_path):
    store = BlobStore(tmp_path / "objects")
    with store.batch():
        digests = [store.put(f"image {i}".encode()) for i in range(5)]
        assert all(store.get(d) == f"image {i}".encode() for i, d in enumerate(digests))
        assert read_elsewhere(tmp_path / "objects", digests[0]) == "missing"  # not committed yet
    assert [read_elsewhere(tmp_path / "objects", d) for d in digests[::4]] == digests[::4]
    store.close()


def test_load_packs_small_originals_and_exports_them_byte_for_byte(photos, tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(Load(photos) >> Save(tmp_path / "out"), progress=False)
        items = list(ws.items())
    assert summary.step("save").computed == 12
    sizes = {p.stat().st_size for p in photos.rglob("*.jpg")}
    small = sum(size <= PACK_LIMIT for size in sizes)
    assert len(files_in(tmp_path / "ws" / "objects")) == len(sizes) - small  # the others are packed
    assert small > 0 and (tmp_path / "ws" / "objects" / "pack.db").is_file()
    for item in items:  # each original as it was read, from wherever it is stored
        assert hashlib.sha256(ws.blobs.get(item.id)).hexdigest() == item.id
    for source in photos.rglob("*.jpg"):  # unturned JPEGs are copied to the export as they are
        exported = tmp_path / "out" / source.relative_to(photos)
        assert exported.read_bytes() == source.read_bytes()


def test_gc_frees_packed_originals_of_items_that_left_and_keeps_the_rest(photos, tmp_path):
    small = photos / "small"
    small.mkdir()
    for i in range(30):  # well under PACK_LIMIT each
        Image.new("RGB", (64, 48), (i * 8, 100, 200)).save(small / f"{i:02d}.png")
    with Workspace(tmp_path / "ws") as ws:
        ws.run(Load(photos), progress=False)
        pack = tmp_path / "ws" / "objects" / "pack.db"
        for path in small.iterdir():  # the small images leave the folder
            path.unlink()
        ws.run(Load(photos), progress=False)
        kept = {item.id for item in ws.items()}
        assert len(kept) == 12
        leaving = set(ws.blobs.digests()) - kept
        size = sum(len(ws.blobs.get(d)) for d in leaving)
        statements: list[str] = []
        ws.blobs.pack._connection(create=False).set_trace_callback(statements.append)
        report = ws.gc()
        assert report.removed == 30 and report.freed_bytes == size
        deletes = [s for s in statements if s.startswith("DELETE")]
        assert len(deletes) == 30 and statements.count("COMMIT") == 1  # one transaction for all 30
        assert set(ws.blobs.digests()) == kept
        assert all(hashlib.sha256(ws.blobs.get(d)).hexdigest() == d for d in kept)
        assert pack.is_file()


SLOW_LOAD = """
import sys
from captionary import Load, Workspace
from captionary.core import writer
every_run = writer.DbWriter.__init__
# rows committed every 50 ms (not 2 s): the kills land between several commits of rows and of blobs
writer.DbWriter.__init__ = lambda self, db, **options: every_run(self, db, batch=200, interval=0.05)
with Workspace(sys.argv[2]) as ws:
    ws.run(Load(sys.argv[1], threads=2), progress=False)
"""


def source_rows(db: Path) -> list[str]:
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return [row[0] for row in con.execute("SELECT item FROM source_files")]
    except sqlite3.OperationalError:  # no schema yet
        return []
    finally:
        con.close()


def test_a_killed_ingest_leaves_no_row_naming_a_blob_it_did_not_store(tmp_path):
    """SIGKILL in the middle of a first load of many small files, three times: every item the
    database names has its bytes in the store, and the next run completes."""
    folder = tmp_path / "many"
    folder.mkdir()
    total = 4000
    for i in range(total):
        Image.new("RGB", (16, 12), (i % 256, i // 256, 7)).save(folder / f"{i:04d}.png")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    ws_path, db = tmp_path / "ws", tmp_path / "ws" / "captionary.db"
    killed_mid_ingest = 0
    for _ in range(3):
        before = len(source_rows(db))
        process = subprocess.Popen([sys.executable, "-c", SLOW_LOAD, str(folder), str(ws_path)], env=env)
        deadline = time.monotonic() + 60
        while len(source_rows(db)) < before + 100 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        named = source_rows(db)
        killed_mid_ingest += len(named) < total
        store = BlobStore(ws_path / "objects")
        assert all(digest in store for digest in named), "a row names a blob that was not stored"
        store.close()
    assert killed_mid_ingest
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(folder), progress=False)
        assert summary.errors == [] and len(ws) == total
        assert all(hashlib.sha256(ws.blobs.get(item.id)).hexdigest() == item.id for item in ws.items())


def _small_pngs(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        buffer = io.BytesIO()
        Image.new("RGB", (40, 30), (i * 3, 90, 200)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _manifest(tmp_path: Path, images: list[bytes]) -> LoadManifest:
    rows = []
    for i, data in enumerate(images):
        (tmp_path / f"{i:03d}.png").write_bytes(data)
        rows.append(json.dumps({"image": f"{i:03d}.png", "caption": f"image {i}"}))
    (tmp_path / "list.jsonl").write_text("\n".join(rows) + "\n")
    return LoadManifest(tmp_path / "list.jsonl")


def _shard(tmp_path: Path, images: list[bytes]) -> LoadWebDataset:
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for i, data in enumerate(images):
            info = tarfile.TarInfo(f"{i:03d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return LoadWebDataset(str(tmp_path / "shard.tar"))


def _hf(tmp_path: Path, images: list[bytes]) -> LoadHuggingFace:
    import datasets

    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    rows = {"image": [{"bytes": d, "path": None} for d in images], "text": ["x"] * len(images)}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "hf"))
    return LoadHuggingFace(str(tmp_path / "hf"))


@pytest.mark.parametrize("source", [_manifest, _shard, _hf], ids=["manifest", "webdataset", "huggingface"])
def test_every_source_stores_a_run_of_small_images_in_few_pack_transactions(tmp_path, monkeypatch, source):
    """Like `load`, the manifest, webdataset and Hugging Face sources store new small images in
    groups (one pack transaction per 64), not one commit per image."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    images = _small_pngs(150)
    step = source(tmp_path, images)
    with Workspace(tmp_path / "ws") as ws:
        statements: list[str] = []
        ws.blobs.pack._connection(create=True).set_trace_callback(statements.append)
        summary = ws.run(step, progress=False)
        assert summary.status == "completed" and not summary.errors
        inserts = [s for s in statements if s.startswith("INSERT")]
        assert len(inserts) == 150 and 3 <= statements.count("COMMIT") <= 6  # 150 in groups of <= 64
        stored = {hashlib.sha256(d).hexdigest() for d in images}
        assert {item.id for item in ws.items()} == stored
        assert all(ws.blobs.get(d) is not None for d in stored)


def test_ingest_chunks_are_cut_by_count_and_by_bytes_and_read_only_as_they_fill():
    """A source ingesting in its own thread holds one chunk at a time: at most 64 entries or 1 MiB
    (the entry that crosses it included), and nothing is read ahead of the chunk being filled."""
    pulled: list[int] = []

    def entries():
        for i in range(200):
            pulled.append(i)
            yield i

    sizes = {i: 600_000 if i in (10, 11) else 10 for i in range(200)}
    cut = chunks(entries(), size_of=sizes.__getitem__)
    assert next(cut) == list(range(12)) and pulled == list(range(12))  # 1.2 MB after the 12th
    assert [len(chunk) for chunk in cut] == [64, 64, 60]
