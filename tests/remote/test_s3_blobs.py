"""The blob store on S3 (a real S3 API: moto's server on 127.0.0.1): the same outputs as a local
store, the objects really in the bucket, gc there."""

from __future__ import annotations

import s3_server

from captionary import Workspace
from test_remote_blobs import assert_same_output_with_blobs_at

s3 = s3_server.s3
s3_endpoint = s3_server.s3_endpoint


def test_a_pipeline_with_blobs_on_s3_gives_the_same_output(photos, tmp_path, s3):
    url = s3.url("objects")
    assert_same_output_with_blobs_at(url, photos, tmp_path)  # byte-identical exports, pool workers on S3
    with Workspace(tmp_path / "ws-local") as ws:
        originals = sorted(ws.blobs.digests())
    stored = [key for key in s3.keys("objects/") if "/tmp/" not in key]
    assert sorted(key.rpartition("/")[2] for key in stored) == originals  # the originals are in the bucket
    assert all(key == f"objects/{d[:2]}/{d}" for key, d in zip(stored, originals))
    assert not [p for p in (tmp_path / "ws-remote" / "objects").rglob("*") if p.is_file()]

    with Workspace(tmp_path / "ws-remote") as ws:  # the URL is remembered; gc works in the bucket
        assert ws.blobs.root == url
        orphan = ws.blobs.put(b"nothing refers to me")
        assert s3.fs.exists(f"{s3.bucket}/objects/{orphan[:2]}/{orphan}")
        report = ws.gc()
        assert orphan not in ws.blobs
        item = next(iter(ws.items()))
        assert item.image.size == (item["width"], item["height"])  # the rest still readable
    assert report.removed == 1 and report.kept == 12
    assert len([key for key in s3.keys("objects/") if "/tmp/" not in key]) == 12
