"""`load_webdataset`: tar shards streamed from paths, brace patterns, pipe: commands and http."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import tarfile
import threading

import pytest

from captionary import LoadWebDataset, ParamError, Workspace

pytest.importorskip("braceexpand")


def write_shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(photos, tmp_path):
    jpgs = sorted(photos.rglob("*.jpg"))
    first = [
        (
            f"s{i:03d}",
            {"jpg": p.read_bytes(), "txt": f"photo {i}".encode(), "json": json.dumps({"n": i}).encode()},
        )
        for i, p in enumerate(jpgs[:6])
    ]
    second = [(f"s{i:03d}", {"jpg": p.read_bytes()}) for i, p in enumerate(jpgs[6:], start=6)]
    second.append(("broken", {"jpg": jpgs[0].read_bytes()[:500]}))
    second.append(("textonly", {"txt": b"no image here"}))
    folder = tmp_path / "shards"
    folder.mkdir()
    write_shard(folder / "0000.tar", first)
    write_shard(folder / "0001.tar", second)
    return folder


def test_brace_pattern_streams_every_sample(shards, tmp_path, monkeypatch):
    from captionary.sources import webdataset as module

    source = LoadWebDataset(shards=f"{shards}/{{0000..0001}}.tar", verify=True)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(source, progress=False)
        items = {item.name: item for item in ws.items()}
        opened = []
        real = module.tar_samples
        monkeypatch.setattr(module, "tar_samples", lambda *args: opened.append(1) or real(*args))
        again = ws.run(source, progress=False)
    assert len(opened) == 1  # the clean, unchanged shard is not even opened; the one with errors is
    assert summary.step("load_webdataset").n_out == 12
    assert items["0000/s002"]["caption"] == "photo 2" and items["0000/s002"]["n"] == 2
    reasons = sorted(e["reason"] for e in summary.errors)
    assert reasons[0] == "0001.tar:textonly: no image member (has: txt)"
    assert reasons[1].startswith("cannot load 0001.tar:broken: corrupt or truncated")
    assert again.step("load_webdataset").computed == 0 and again.step("load_webdataset").cached == 12
    assert again.step("load_webdataset").failed == 2  # still reported


def test_pipe_and_http_shards(shards, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shards))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/0000.tar"
        with Workspace(tmp_path / "ws") as ws:
            over_http = ws.run(LoadWebDataset(shards=url), progress=False)
            piped = ws.run(LoadWebDataset(shards=f"pipe:cat {shards}/0000.tar"), progress=False)
    finally:
        server.shutdown()
    assert over_http.step("load_webdataset").computed == 6
    assert piped.step("load_webdataset").n_out == 6


def test_a_corrupt_shard_is_an_error_not_a_crash(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"this is not a tar file" * 100)
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(LoadWebDataset(shards=str(bad)), progress=False)
    assert "cannot read the shard" in summary.errors[0]["reason"]
    with pytest.raises(ParamError, match="shard not found"):
        LoadWebDataset(shards=str(tmp_path / "missing-{0..1}.tar"))


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files (HEAD answered with Content-Length and Last-Modified unless `versioned` is off) and
    counts the whole-file GETs."""

    gets: list[str] = []
    versioned = True

    def do_GET(self):
        type(self).gets.append(self.path)
        super().do_GET()

    def send_header(self, keyword, value):
        if keyword != "Last-Modified" or self.versioned:
            super().send_header(keyword, value)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("versioned", [True, False])
def test_an_unchanged_http_shard_is_not_fetched_again_and_a_changed_one_is(shards, tmp_path, versioned):
    """A HEAD tells the shard's version (Last-Modified, Content-Length); a server that tells none gets
    the shard read on every run, as before."""
    handler = type("Handler", (CountingHandler,), {"gets": [], "versioned": versioned})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=shards))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = LoadWebDataset(shards=f"http://127.0.0.1:{server.server_address[1]}/0000.tar")
    try:
        with Workspace(tmp_path / "ws") as ws:
            ws.run(source, progress=False)
            again = ws.run(source, progress=False)
            fetched_again = len(handler.gets)
            samples = [
                (f"s{i:03d}", {"jpg": p.read_bytes()})
                for i, p in enumerate(sorted(shards.parent.rglob("*.jpg"))[:3])
            ]
            write_shard(shards / "0000.tar", samples)  # a new version: fewer samples, no captions
            changed = ws.run(source, progress=False)
            captions = [item.get("caption") for item in ws.items()]
    finally:
        server.shutdown()
    assert again.step("load_webdataset").cached == 6
    assert fetched_again == (1 if versioned else 2)
    assert len(handler.gets) == fetched_again + 1  # the changed shard is read again
    assert changed.step("load_webdataset").n_out == 3 and captions == [None] * 3


def test_member_names_split_as_the_webdataset_library_splits_them(photos, tmp_path):
    """One rule (`split_member_name`, `tar_samples`) for the source and the training loader: the library's."""
    from captionary.core.wds_names import split_member_name
    from captionary.core.wds_stream import tar_samples
    from captionary.loader.webdataset import _shard_records

    wds = pytest.importorskip("webdataset")
    jpg = next(photos.rglob("*.jpg")).read_bytes()
    names = {
        "a.jpg": jpg,
        "a.seg.png": b"mask",  # a multi-dot extension
        "a.txt": b"caption",
        "README": b"no dot: no sample",
        "dir.v2/b.jpg": jpg,  # a dot in the folder stays in the key
        "dir.v2/b.JSON": b"{}",
        "dir.v2/LICENSE": b"no dot in the base name",
        "__meta__/c.jpg": jpg,  # the library skips meta folders
        "x.y.z/c.jpg": jpg,
        "x.y.z/c.tar.gz.JPG": b"",
    }
    path = tmp_path / "names.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in names.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar:
        assert [m.name for m in tar.getmembers()] == list(names)  # the names as written

    expected = {
        s["__key__"]: sorted(k for k in s if not k.startswith("__"))
        for s in wds.WebDataset(str(path), shardshuffle=False, empty_check=False)
    }
    assert expected == {
        "a": ["jpg", "seg.png", "txt"],
        "dir.v2/b": ["jpg", "json"],
        "x.y.z/c": ["jpg", "tar.gz.jpg"],
    }
    with open(path, "rb") as stream:
        ours = {key: sorted(members) for key, members, _ in tar_samples(stream)}
    assert ours == expected
    assert [record.id for record in _shard_records(str(path), 10.0)] == list(expected)
    assert split_member_name("README") is None and split_member_name("dir.v2/LICENSE") is None
    assert split_member_name("a.seg.png") == ("a", "seg.png")


def test_a_file_url_goes_through_fsspec_and_is_fingerprinted_by_mtime(shards, tmp_path, monkeypatch):
    from captionary.sources import webdataset as module

    pytest.importorskip("fsspec")
    opened = []
    real = module.tar_samples
    monkeypatch.setattr(module, "tar_samples", lambda *args: opened.append(1) or real(*args))
    source = LoadWebDataset(shards=f"file://{shards}/0000.tar", copy=False)
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(source, progress=False)
        ws.run(source, progress=False)
        assert len(opened) == 1  # unchanged (same size and mtime): not opened
        stat = (shards / "0000.tar").stat()
        os.utime(shards / "0000.tar", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        touched = ws.run(source, progress=False)
        sizes = sorted(item.image.size for item in ws.items())
    assert len(opened) == 2 and touched.step("load_webdataset").computed == 6  # changed mtime: re-read
    assert first.step("load_webdataset").computed == 6 and len(sizes) == 6
    refs = [json.loads(p.read_text()) for p in (tmp_path / "ws" / "objects").rglob("*.ref")]
    assert {ref["fsspec"] for ref in refs} == {f"file://{shards}/0000.tar"}  # read in place, by range
