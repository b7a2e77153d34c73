"""WebDataset shards written by captionary's save step, streamed as an IterableDataset: split over
DataLoader workers and ranks without loss or repeats; same-bucket batches when asked."""

from __future__ import annotations

from collections import Counter

import loader_fixtures
import pytest

from captionary.errors import ConfigError
from captionary.loader import ImageCaptionDataset, collate

torch = pytest.importorskip("torch")
varied, export = loader_fixtures.varied, loader_fixtures.export
BUCKETS = {"resolution": 256, "min_bucket_reso": 128, "max_bucket_reso": 512}


def ids(loader) -> Counter:
    return Counter(i for batch in loader for i in batch["id"])


def test_workers_and_ranks_split_the_shards(export):
    out = export("webdataset", shard_size=4)  # 10 samples in 3 shards
    assert len(list(out.glob("*.tar"))) == 3
    dataset = ImageCaptionDataset(out, buckets=BUCKETS)
    everything = Counter(r.id for r in dataset.records())
    assert len(everything) == 10
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=2, collate_fn=lambda s: collate([s])
    )
    assert ids(loader) == everything  # each sample once, across both workers
    ranks = [
        ImageCaptionDataset(out, buckets=BUCKETS, num_replicas=2, rank=r) for r in (0, 1)
    ]  # 2 ranks x 2 workers = 4 readers > 3 shards: samples are dealt round-robin instead
    seen = [
        ids(torch.utils.data.DataLoader(d, batch_size=None, num_workers=2, collate_fn=lambda s: collate([s])))
        for d in ranks
    ]
    assert seen[0] + seen[1] == everything
    assert not set(seen[0]) & set(seen[1])


def test_bucketed_batches_from_a_stream(export):
    out = export("webdataset", shard_size=4)
    dataset = ImageCaptionDataset(out, buckets=BUCKETS, batch_size=2, caption={"prefix": "ohwx"})
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, collate_fn=collate)
    total = 0
    for batch in loader:
        w, h = batch["bucket"][0].tolist()
        assert batch["pixel_values"].shape[1:] == (3, h, w)
        assert (batch["bucket"] == batch["bucket"][0]).all()
        assert all(c.startswith("ohwx") for c in batch["caption"])
        total += len(batch["id"])
    assert total == 10
    assert dataset.leftovers == sum(n % 2 for n in Counter(map(tuple, _buckets(dataset))).values())


def _buckets(dataset):
    return [dataset.bucketer.select(*r.size or _size(r)).reso for r in dataset.records()]


def _size(record):
    from captionary.loader.records import open_image

    return open_image(record).size


def test_missing_shard_and_unsupported_options(tmp_path):
    with pytest.raises(ConfigError, match="shard not found"):
        ImageCaptionDataset(str(tmp_path / "shard-{000..002}.tar"))
    (tmp_path / "a.tar").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"WebDataset sources do not take \['latents'\]"):
        ImageCaptionDataset(tmp_path / "a.tar", latents=object())


def test_a_bad_sample_names_its_shard_and_key_or_is_skipped(varied, tmp_path):
    webdataset = pytest.importorskip("webdataset")
    shard = tmp_path / "mixed.tar"
    with webdataset.TarWriter(str(shard)) as sink:
        sink.write({"__key__": "good", "jpg": (varied / "dog" / "00.jpg").read_bytes(), "txt": "sks dog"})
        sink.write({"__key__": "broken", "jpg": b"\xff\xd8 truncated", "txt": "nothing"})
        sink.write({"__key__": "also_good", "jpg": (varied / "cat" / "01.jpg").read_bytes(), "txt": "cat"})
    with pytest.raises(ConfigError, match=r"mixed\.tar: broken: cannot read the image"):
        list(ImageCaptionDataset(shard, buckets=BUCKETS))
    dataset = ImageCaptionDataset(shard, buckets=BUCKETS, on_error="skip")
    assert [s["caption"] for s in dataset] == ["sks dog", "cat"]
    assert [where for where, _ in dataset.skipped] == [f"{shard}: broken"]


def test_preview_of_a_stream_reports_its_bad_samples(varied, tmp_path):
    webdataset = pytest.importorskip("webdataset")
    from captionary.loader import preview

    shard = tmp_path / "mixed.tar"
    with webdataset.TarWriter(str(shard)) as sink:
        for n, name in enumerate(["dog/00.jpg", "dog/01.jpg", "cat/01.jpg"]):
            sink.write({"__key__": f"s{n}", "jpg": (varied / name).read_bytes(), "txt": name})
        sink.write({"__key__": "broken", "jpg": b"\xff\xd8 truncated", "txt": "nothing"})
    result = preview(shard, tmp_path / "p.png", batch_size=1, buckets=BUCKETS)
    assert "3 image(s), batch size 1" in result.report
    assert "1 image(s) skipped" in result.report and f"{shard}: broken" in result.report


def test_pipe_shards_stream_like_files(export):
    out = export("webdataset", shard_size=4)
    shards = sorted(out.glob("*.tar"))
    dataset = ImageCaptionDataset(out, buckets=BUCKETS)
    piped = ImageCaptionDataset(f"pipe:cat {shards[0].parent}/shard-{{000000..000002}}.tar", buckets=BUCKETS)
    assert Counter(r.id for r in piped.records()) == Counter(r.id for r in dataset.records())
