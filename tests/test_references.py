"""`copy: false`: huge inputs stay where they are; the workspace keeps a reference per image (a shard's
byte range, a file, a URL) and reads the bytes when a step needs them."""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from captionary import LoadManifest, LoadWebDataset, Resize, Save, Workspace
from captionary.core.blobstore import BlobStore
from conftest import tree
from test_webdataset_source import write_shard

pytest.importorskip("braceexpand")


@pytest.fixture
def shard(photos: Path, tmp_path: Path) -> Path:
    samples = [
        (p.relative_to(photos).with_suffix("").as_posix().replace("/", "_"), {"jpg": p.read_bytes()})
        for p in sorted(photos.rglob("*.jpg"))
    ]
    path = tmp_path / "shards" / "0000.tar"
    path.parent.mkdir()
    write_shard(path, samples)
    return path


def blob_files(ws_path: Path) -> list[Path]:
    return [p for p in (ws_path / "objects").rglob("*") if p.is_file() and p.parent.name != "tmp"]


def test_referenced_images_are_not_copied_and_export_the_same(shard, photos, tmp_path):
    for copy in (True, False):
        with Workspace(tmp_path / f"ws-{copy}") as ws:
            summary = ws.run(
                LoadWebDataset(shards=str(shard), copy=copy)
                >> Resize(max_edge=64)
                >> Save(tmp_path / f"out-{copy}/small"),
                progress=False,
            )
            ws.run(
                LoadWebDataset(shards=str(shard), copy=copy) >> Save(tmp_path / f"out-{copy}/full"),
                progress=False,
            )
        assert summary.step("save").computed == 12
    copied = list(BlobStore(tmp_path / "ws-True" / "objects").digests())  # packed or files
    referenced = blob_files(tmp_path / "ws-False")
    assert len(copied) == len(referenced) == 12
    assert all(p.suffix == ".ref" for p in referenced)
    assert sum(p.stat().st_size for p in referenced) < 12 * 200  # small JSON, not megabytes of JPEG
    for kind in ("small", "full"):
        assert tree(tmp_path / "out-True" / kind) == tree(tmp_path / "out-False" / kind)  # the same files
    original = (photos / "dog" / "00.jpg").read_bytes()
    assert (tmp_path / "out-False" / "full" / "0000" / "dog_00.jpg").read_bytes() == original


def test_a_shard_changed_behind_our_back_is_an_item_error_not_wrong_pixels(shard, tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        ws.run(LoadWebDataset(shards=str(shard), copy=False), progress=False)
        stat = shard.stat()
        data = bytearray(shard.read_bytes())
        data[1500:1600] = bytes(100)  # inside the first image's bytes
        shard.write_bytes(bytes(data))
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: looks unchanged
        summary = ws.run(LoadWebDataset(shards=str(shard), copy=False) >> Resize(max_edge=32), progress=False)
    assert summary.step("resize").failed == 1
    (error,) = summary.errors
    assert "changed since it was read" in error["reason"] and "0000.tar" in error["reason"]


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with `Range: bytes=a-b` support (206), and counts the requests it answered."""

    ranges: list[str] = []

    def do_GET(self):
        wanted = self.headers.get("Range")
        if not wanted:
            return super().do_GET()
        start, end = (int(v) for v in wanted.removeprefix("bytes=").split("-"))
        data = Path(self.translate_path(self.path)).read_bytes()[start : end + 1]
        type(self).ranges.append(wanted)
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_a_shard_over_http_is_read_with_range_requests(shard, tmp_path):
    handler = functools.partial(RangeHandler, directory=str(shard.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/0000.tar"
    try:
        with Workspace(tmp_path / "ws") as ws:
            summary = ws.run(LoadWebDataset(shards=url, copy=False) >> Resize(max_edge=48), progress=False)
            sizes = {item.name: (item["width"], item["height"]) for item in ws.items()}
            image = next(item for item in ws.items() if item.name == "0000/dog_00").image
    finally:
        server.shutdown()
    assert summary.step("resize").computed == 12 and not summary.errors
    assert len(RangeHandler.ranges) >= 12  # every image fetched as its byte range, not the whole shard
    assert max(image.size) == 48 and all(max(size) == 48 for size in sizes.values())
    assert isinstance(image, Image.Image)


def test_gc_keeps_references_in_use_and_deletes_the_rest(shard, tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        ws.run(LoadWebDataset(shards=str(shard), copy=False), progress=False)
        stray = ws.blobs.put_reference("f" * 64, {"file": str(shard), "offset": 0, "size": 1})
        report = ws.gc()
        assert report.removed == 1 and report.kept == 12
        assert stray not in ws.blobs


def test_manifest_images_by_reference_local_and_over_http(photos, tmp_path):
    """`load_manifest: {copy: false}`: local files and URLs are referenced, read when needed."""
    files = sorted(photos.rglob("*.jpg"))[:4]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(photos))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rows = [str(f.relative_to(photos.parent)) for f in files[:2]]
    rows += [f"{base}/{f.relative_to(photos).as_posix()}" for f in files[2:]]
    manifest = photos.parent / "meta.jsonl"
    manifest.write_text("".join(json.dumps({"image": row}) + "\n" for row in rows))
    try:
        with Workspace(tmp_path / "ws") as ws:
            summary = ws.run(
                LoadManifest(path=manifest, copy=False) >> Save(tmp_path / "out", naming="id"), progress=False
            )
    finally:
        server.shutdown()
    assert summary.step("save").computed == 4 and not summary.errors
    refs = [json.loads(p.read_text()) for p in blob_files(tmp_path / "ws")]
    assert sorted(next(iter(ref)) for ref in refs) == ["file", "file", "url", "url"]
    exported = sorted(p.read_bytes() for p in (tmp_path / "out").rglob("*.jpg"))
    assert exported == sorted(f.read_bytes() for f in files)  # the originals' bytes, read where they are
