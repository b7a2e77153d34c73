"""The blob store on S3 (a real S3 API: moto's server on 127.0.0.1): the same outputs as a local
store, the objects really in the bucket, gc there."""

from __future__ import annotations

import s3_server

from captionary import Load, Resize, Save, Workspace
from conftest import tree

s3 = s3_server.s3
s3_endpoint = s3_server.s3_endpoint


def test_a_pipeline_with_blobs_on_s3_gives_the_same_output(photos, tmp_path, s3):
    url = s3.url("objects")
    outputs = {}
    for name, blobs in (("local", None), ("s3", url)):
        with Workspace(tmp_path / f"ws-{name}", blobs=blobs) as ws:
            pipeline = Load(photos) >> Resize(max_edge=80) >> Save(tmp_path / f"out-{name}")
            first = ws.run(pipeline, progress=False, workers=2)  # pool workers read the blobs from S3
            again = ws.run(pipeline, progress=False, workers=2)
        assert first.step("resize").computed == 12 and again.step("resize").computed == 0
        assert not first.errors
        outputs[name] = tree(tmp_path / f"out-{name}")
    assert outputs["local"] == outputs["s3"]  # byte-identical exports
    with Workspace(tmp_path / "ws-local") as ws:
        originals = sorted(ws.blobs.digests())
    stored = [key for key in s3.keys("objects/") if "/tmp/" not in key]
    assert sorted(key.rpartition("/")[2] for key in stored) == originals  # the originals are in the bucket
    assert all(key == f"objects/{d[:2]}/{d}" for key, d in zip(stored, originals))
    assert not [p for p in (tmp_path / "ws-s3" / "objects").rglob("*") if p.is_file()]

    with Workspace(tmp_path / "ws-s3") as ws:  # the URL is remembered; gc works in the bucket
        assert ws.blobs.root == url
        orphan = ws.blobs.put(b"nothing refers to me")
        assert s3.fs.exists(f"{s3.bucket}/objects/{orphan[:2]}/{orphan}")
        report = ws.gc()
        assert orphan not in ws.blobs
        item = next(iter(ws.items()))
        assert item.image.size == (item["width"], item["height"])  # the rest still readable
    assert report.removed == 1 and report.kept == 12
    assert len([key for key in s3.keys("objects/") if "/tmp/" not in key]) == 12
