"""The training loader streams WebDataset shards from S3 (moto's server on 127.0.0.1) as it does
local ones: the same samples, split over DataLoader workers without loss or repeats."""

from __future__ import annotations

from collections import Counter

import pytest
import s3_server

from captionary import Load, Resize, Save, Workspace

s3 = s3_server.s3
s3_endpoint = s3_server.s3_endpoint
torch = pytest.importorskip("torch")
pytest.importorskip("braceexpand")
BUCKETS = {"resolution": 128, "min_bucket_reso": 64, "max_bucket_reso": 256}


def samples(dataset, workers: int) -> Counter:
    from captionary.loader import collate

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, collate_fn=lambda s: collate([s])
    )
    return Counter((i, c) for batch in loader for i, c in zip(batch["id"], batch["caption"]))


def test_the_loader_streams_shards_from_s3_like_local_ones(photos, tmp_path, s3):
    from captionary.loader import ImageCaptionDataset

    out = tmp_path / "shards"
    with Workspace(tmp_path / "ws") as ws:
        ws.run(
            Load(photos) >> Resize(max_edge=96) >> Save(out, format="webdataset", shard_size=5),
            progress=False,
        )
    shards = sorted(out.glob("shard-*.tar"))
    assert len(shards) == 3
    for shard in shards:
        s3.fs.put(str(shard), f"{s3.bucket}/train/{shard.name}")

    local = samples(ImageCaptionDataset(out, buckets=BUCKETS), workers=0)
    remote = ImageCaptionDataset(s3.url("train/shard-{000000..000002}.tar"), buckets=BUCKETS)
    assert len(local) == 12 and all(count == 1 for count in local.values())
    assert samples(remote, workers=2) == local  # every sample once, over two workers
    single = ImageCaptionDataset(s3.url("train/shard-000001.tar"), buckets=BUCKETS)  # no pattern
    assert sum(samples(single, workers=0).values()) == 5
