"""WebDataset export: shards read back with the `webdataset` library, written incrementally."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from captionary import Load, Resize, Save, Take, Workspace

wds = pytest.importorskip("webdataset")


def export(ws_path: Path, photos: Path, out: Path, *steps, **options):
    pipeline = Load(photos)
    for step in steps:
        pipeline = pipeline >> step
    with Workspace(ws_path) as ws:
        return ws.run(pipeline >> Save(out, format="webdataset", **options), progress=False)


def read_samples(out: Path) -> list[dict]:
    urls = sorted(str(p) for p in out.glob("shard-*.tar"))
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


def members(shard: Path) -> list[str]:
    with tarfile.open(shard) as tar:
        return tar.getnames()


def test_shards_of_n_samples_read_back_with_webdataset(ws_path, photos, tmp_path):
    out = tmp_path / "shards"
    summary = export(ws_path, photos, out, Resize(max_edge=64), shard_size=5)
    assert summary.step("save").computed == 12
    shards = sorted(out.glob("shard-*.tar"))
    assert [p.name for p in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    keys = [{name.partition(".")[0] for name in members(p)} for p in shards]
    assert [len(k) for k in keys] == [5, 5, 2]
    assert all(f"{key}.json" in members(p) for p, k in zip(shards, keys) for key in k)
    samples = read_samples(out)
    assert len(samples) == 12
    by_key = {s["__key__"]: s for s in samples}
    assert by_key["dog/00"]["txt"].decode() == "a photo of sks dog"
    for sample in samples:
        props = json.loads(sample["json"])
        image = Image.open(io.BytesIO(sample["jpg"]))
        assert max(image.size) == 64
        assert (props["width"], props["height"]) == image.size


def test_original_bytes_are_kept_when_no_step_changed_the_image(ws_path, photos, tmp_path):
    out = tmp_path / "shards"
    export(ws_path, photos, out)
    by_key = {s["__key__"]: s for s in read_samples(out)}
    assert by_key["dog/00"]["jpg"] == (photos / "dog" / "00.jpg").read_bytes()


def test_rerun_writes_nothing_and_changes_rewrite_only_what_they_must(ws_path, photos, tmp_path):
    out = tmp_path / "shards"
    export(ws_path, photos, out, shard_size=5)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    again = export(ws_path, photos, out, shard_size=5)
    assert again.step("save").computed == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == stamps

    (photos / "dog" / "00.txt").write_text("a brown dog\n")
    changed = export(ws_path, photos, out, shard_size=5)
    assert changed.step("save").computed == 1
    samples = read_samples(out)
    assert len(samples) == 12  # the old sample was removed from its shard, the new one added
    assert [s["txt"].decode() for s in samples if s["__key__"] == "dog/00"] == ["a brown dog"]
    untouched = [name for name, stamp in stamps.items() if (out / name).stat().st_mtime_ns == stamp]
    assert len(untouched) == 2  # only the shard that held dog/00 was rewritten


def test_items_no_longer_produced_leave_the_shards(ws_path, photos, tmp_path):
    out = tmp_path / "shards"
    export(ws_path, photos, out, shard_size=4)
    export(ws_path, photos, out, Take(n=3), shard_size=4)
    assert len(read_samples(out)) == 3


def test_a_file_the_sink_did_not_write_is_never_overwritten(ws_path, photos, tmp_path):
    out = tmp_path / "shards"
    out.mkdir()
    (out / "shard-000000.tar").write_bytes(b"somebody else's")
    summary = export(ws_path, photos, out)
    assert summary.step("save").failed == 12
    assert (out / "shard-000000.tar").read_bytes() == b"somebody else's"


def test_keys_with_dots_stay_valid_webdataset_keys(ws_path, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    Image.new("RGB", (32, 32), "red").save(photos / "a.b.png")
    (photos / "a.b.txt").write_text("red square")
    out = tmp_path / "shards"
    export(ws_path, photos, out)
    (sample,) = read_samples(out)
    assert sample["__key__"] == "a_b"
    assert sample["txt"] == b"red square"


def test_a_killed_run_leaves_only_whole_shards(ws_path, photos, tmp_path):
    out = tmp_path / "shards"
    out.mkdir()
    (out / ".captionary-tmp-123-shard-000000.tar").write_bytes(b"half a shard")
    export(ws_path, photos, out, shard_size=100)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "shard-000000.tar"]  # + the card
    assert len(read_samples(out)) == 12


def test_a_shard_lost_after_it_was_recorded_is_written_again(ws_path, photos, tmp_path):
    """The state a kill between recording a shard and renaming it into place leaves."""
    out = tmp_path / "shards"
    export(ws_path, photos, out, shard_size=5)
    (out / "shard-000001.tar").unlink()
    again = export(ws_path, photos, out, shard_size=5)
    assert again.step("save").computed == 5
    keys = [s["__key__"] for s in read_samples(out)]
    assert len(keys) == len(set(keys)) == 12
    assert sorted(p.name for p in out.glob("*.tar")) == [
        "shard-000000.tar",
        "shard-000002.tar",
        "shard-000003.tar",
    ]


def test_several_writer_threads_produce_samples_at_once(tmp_path):
    """Reading and encoding a sample happens outside the shard's lock: two writers are inside
    `content()` together (one at a time would break the barrier), and both samples land whole."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from captionary.core.db import connect
    from captionary.core.writer import DbWriter
    from captionary.sinks.shards import Member, ShardWriter

    both_producing = threading.Barrier(2, timeout=20)

    def content(text: bytes):
        def produce() -> bytes:
            both_producing.wait()
            return text

        return produce

    with Workspace(tmp_path / "ws") as ws:
        writer = DbWriter(connect(ws.db_path))
        shards = ShardWriter(SimpleNamespace(ws=ws, writer=writer), "t", tmp_path / "out", shard_size=10)
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(shards.write, f"item{i}", f"k{i}", f"d{i}", [Member(".txt", content(b"%d" % i))])
                for i in range(2)
            ]
            for future in futures:
                future.result()
        shards.close(complete=True)
        writer.close()
    samples = read_samples(tmp_path / "out")
    assert sorted((s["__key__"], s["txt"]) for s in samples) == [("k0", b"0"), ("k1", b"1")]


def test_sample_keys_of_odd_item_names_read_back_as_themselves(tmp_path):
    from captionary.sinks.shards import sample_key

    names = ["dog/00", "a.b.c", "v1.2/photo.final", "__meta__", "__x__/y", "x/__y__", ".hidden", "plain"]
    keys = [sample_key(name) for name in names]
    assert keys[1] == "a_b_c" and keys[2] == "v1.2/photo_final" and keys[4] == "sample__x__/y"
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for key in keys:
            info = tarfile.TarInfo(f"{key}.txt")
            info.size = len(key.encode())
            tar.addfile(info, io.BytesIO(key.encode()))
    samples = list(wds.WebDataset([str(shard)], shardshuffle=False, empty_check=False))
    assert [(s["__key__"], s["txt"].decode()) for s in samples] == [(k, k) for k in keys]
