"""The Ray executor with shards and blobs on S3 (moto's server): actors read the referenced images
from the bucket and give the local executor's output."""

from __future__ import annotations

import pytest
import s3_server

from captionary import LoadWebDataset, Resize, Save, Workspace
from conftest import REPO, tree
from test_webdataset_source import write_shard

s3 = s3_server.s3
s3_endpoint = s3_server.s3_endpoint
ray = pytest.importorskip("ray")
pytest.importorskip("braceexpand")


@pytest.mark.slow
def test_ray_reads_s3_shards_and_blobs_like_the_local_executor(photos, tmp_path, s3, monkeypatch):
    samples = [(f"{p.parent.name}_{p.stem}", {"jpg": p.read_bytes()}) for p in sorted(photos.rglob("*.jpg"))]
    write_shard(tmp_path / "0000.tar", samples)
    s3.fs.put_file(str(tmp_path / "0000.tar"), f"{s3.bucket}/shards/0000.tar")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(  # started here, so its workers inherit the S3 endpoint and keys from the environment
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO / "src")}},
    )
    try:
        for executor in ("local", "ray"):
            with Workspace(tmp_path / f"ws-{executor}", blobs=s3.url(f"objects-{executor}")) as ws:
                source = LoadWebDataset(shards=s3.url("shards/0000.tar"), copy=False)
                pipeline = source >> Resize(max_edge=64) >> Save(tmp_path / f"out-{executor}")
                summary = ws.run(pipeline, executor=executor, progress=False)
            assert summary.step("resize").computed == 12 and not summary.errors
    finally:
        ray.shutdown()
    assert tree(tmp_path / "out-local") == tree(tmp_path / "out-ray")
    assert len([key for key in s3.keys("objects-ray/") if key.endswith(".ref")]) == 12
