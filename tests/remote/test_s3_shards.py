"""`load_webdataset` over S3 (a real S3 API: moto's server on 127.0.0.1): streamed shards with brace
patterns, images copied or referenced in place (byte ranges), remote shards fingerprinted by ETag so an
unchanged one is not read again, and errors that name the shard."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import s3_server

from captionary import ItemError, LoadWebDataset, ParamError, Resize, Save, Workspace
from captionary.sources import webdataset as wds_source
from conftest import tree
from test_webdataset_source import write_shard

s3 = s3_server.s3
s3_endpoint = s3_server.s3_endpoint
pytest.importorskip("braceexpand")


def upload_shards(photos: Path, folder: Path, s3: s3_server.S3) -> list[Path]:
    """Two shards of the bundled photos (6 samples each, with a caption), local and in the bucket."""
    folder.mkdir()
    files = sorted(photos.rglob("*.jpg"))
    paths = []
    for n, chunk in enumerate((files[:6], files[6:])):
        samples = [(f"{p.parent.name}_{p.stem}", {"jpg": p.read_bytes(), "txt": b"a photo"}) for p in chunk]
        path = folder / f"{n:04d}.tar"
        write_shard(path, samples)
        s3.fs.put_file(str(path), f"{s3.bucket}/shards/{path.name}")
        paths.append(path)
    return paths


def test_s3_shards_copied_or_referenced_export_what_local_shards_do(photos, tmp_path, s3):
    upload_shards(photos, tmp_path / "local", s3)
    sources = {
        "local": str(tmp_path / "local" / "{0000..0001}.tar"),
        "s3-copy": s3.url("shards/{0000..0001}.tar"),
        "s3-ref": s3.url("shards/{0000..0001}.tar"),
    }
    for name, shards in sources.items():
        with Workspace(tmp_path / f"ws-{name}") as ws:
            source = LoadWebDataset(shards=shards, copy=name != "s3-ref")
            summary = ws.run(source >> Resize(max_edge=64) >> Save(tmp_path / name / "small"), progress=False)
            ws.run(source >> Save(tmp_path / name / "full"), progress=False)
        assert summary.step("save").computed == 12 and not summary.errors
    for kind in ("small", "full"):
        assert tree(tmp_path / "local" / kind) == tree(tmp_path / "s3-copy" / kind)
        assert tree(tmp_path / "s3-copy" / kind) == tree(tmp_path / "s3-ref" / kind)
    original = (photos / "dog" / "00.jpg").read_bytes()
    assert (tmp_path / "s3-ref" / "full" / "0000" / "dog_00.jpg").read_bytes() == original

    blobs = [p for p in (tmp_path / "ws-s3-ref" / "objects").rglob("*") if p.is_file()]
    assert len(blobs) == 12 and all(p.suffix == ".ref" for p in blobs)  # references, not copies
    refs = [json.loads(p.read_text()) for p in blobs]
    assert {ref["fsspec"] for ref in refs} == {s3.url("shards/0000.tar"), s3.url("shards/0001.tar")}


def test_an_unchanged_s3_shard_is_not_read_again_and_a_changed_one_is(photos, tmp_path, s3, monkeypatch):
    paths = upload_shards(photos, tmp_path / "local", s3)
    opened = []
    real = wds_source.tar_samples
    monkeypatch.setattr(wds_source, "tar_samples", lambda *args: opened.append(1) or real(*args))
    source = LoadWebDataset(shards=s3.url("shards/{0000..0001}.tar"))
    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(source, progress=False)
        assert len(opened) == 2 and first.step("load_webdataset").computed == 12
        again = ws.run(source, progress=False)
        assert len(opened) == 2  # both shards unchanged (same ETag): neither is opened
        assert again.step("load_webdataset").cached == 12

        jpgs = sorted(photos.rglob("*.jpg"))[6:]
        recaptioned = [(f"{p.parent.name}_{p.stem}", {"jpg": p.read_bytes(), "txt": b"new"}) for p in jpgs]
        write_shard(paths[1], recaptioned)  # the same images, new captions
        s3.fs.put_file(str(paths[1]), f"{s3.bucket}/shards/0001.tar")
        changed = ws.run(source, progress=False)
        assert len(opened) == 3  # only the rewritten shard is read again
        captions = sorted(item["caption"] for item in ws.items())
    assert changed.step("load_webdataset").cached == 6 and changed.step("load_webdataset").computed == 6
    assert captions == ["a photo"] * 6 + ["new"] * 6


def test_a_tampered_s3_shard_is_an_item_error_naming_it(photos, tmp_path, s3):
    paths = upload_shards(photos, tmp_path / "local", s3)
    with Workspace(tmp_path / "ws") as ws:
        ws.run(LoadWebDataset(shards=s3.url("shards/0000.tar"), copy=False), progress=False)
        data = bytearray(paths[0].read_bytes())
        data[1500:1600] = bytes(100)  # inside the first image's bytes; the object keeps its size
        s3.fs.pipe_file(f"{s3.bucket}/shards/0000.tar", bytes(data))
        items = sorted(ws.items(), key=lambda item: item.name)
        with pytest.raises(ItemError, match=r"s3://.*/shards/0000\.tar changed since it was read"):
            items[0].image  # noqa: B018
        assert items[1].image.size == (items[1]["width"], items[1]["height"])  # the others still read


def test_missing_shards_buckets_and_credentials_are_errors_naming_the_shard(
    photos, tmp_path, s3, monkeypatch
):
    upload_shards(photos, tmp_path / "local", s3)
    with Workspace(tmp_path / "ws") as ws:
        missing = ws.run(LoadWebDataset(shards=s3.url("shards/{0000..0002}.tar")), progress=False)
        no_bucket = ws.run(LoadWebDataset(shards="s3://no-such-bucket/0000.tar"), progress=False)
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups
        s3.fs.clear_instance_cache()
        no_keys = ws.run(LoadWebDataset(shards=s3.url("shards/0001.tar")), progress=False)
    assert missing.step("load_webdataset").computed == 12
    (error,) = missing.errors
    assert error["reason"].startswith(f"{s3.url('shards/0002.tar')}: cannot read the shard: not found")
    (error,) = no_bucket.errors
    assert error["reason"].startswith("s3://no-such-bucket/0000.tar: cannot read the shard: not found")
    (error,) = no_keys.errors
    reason = "cannot read the shard: NoCredentialsError: Unable to locate credentials"
    assert error["reason"] == f"{s3.url('shards/0001.tar')}: {reason}"


def test_an_unknown_or_uninstalled_file_system_fails_when_the_step_is_built():
    with pytest.raises(ParamError, match=r"nosuch://bucket/0\.tar.*Protocol not known"):
        LoadWebDataset(shards="nosuch://bucket/0.tar")
    if importlib.util.find_spec("gcsfs") is None:  # GCS's file system is not installed here
        with pytest.raises(ParamError, match=r"gs://bucket/0\.tar.*install gcsfs"):
            LoadWebDataset(shards="gs://bucket/0.tar")
