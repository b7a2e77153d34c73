"""`captionary preview`: a PNG grid of a real augmented batch and the bucket statistics."""

from __future__ import annotations

from collections import Counter

import loader_fixtures
import numpy as np
import pytest
from PIL import Image

from captionary.cli import main
from captionary.loader import BucketBatchSampler, ImageCaptionDataset, preview
from captionary.loader.image_transforms import to_pil
from captionary.loader.preview import TILE

pytest.importorskip("torch")
varied, export = loader_fixtures.varied, loader_fixtures.export
BUCKETS = {"resolution": 256, "min_bucket_reso": 128, "max_bucket_reso": 512}


def test_preview_draws_the_first_full_augmented_batch(export, tmp_path):
    out = export("kohya")
    options = {"buckets": BUCKETS, "image": {"flip_p": 0.5}, "caption": {"shuffle_tags": True}}
    result = preview(out, tmp_path / "grid.png", batch_size=2, seed=4, epoch=1, **options)
    dataset = ImageCaptionDataset(out, seed=4, **options)
    sampler = BucketBatchSampler(dataset, 2, seed=4)
    sampler.set_epoch(1)
    batches = list(sampler)
    assert len(batches[0]) == 1  # the sampler's first batch is a bucket's smaller last one: not shown
    samples = [dataset[k] for k in next(batch for batch in batches if len(batch) == 2)]
    assert result.captions == [s["caption"] for s in samples]
    assert result.buckets == [s["bucket"] for s in samples]
    with Image.open(result.path) as grid:
        assert grid.format == "PNG"
        assert grid.size == (len(samples) * TILE, TILE + 96)
        # the first tile shows the first sample's transformed pixels
        thumb = to_pil(samples[0]["pixel_values"])
        thumb.thumbnail((TILE - 8, TILE - 8))
        x, y = (TILE - thumb.width) // 2, (TILE - thumb.height) // 2
        tile = grid.convert("RGB").crop((x, y, x + thumb.width, y + thumb.height))
        assert np.abs(np.asarray(tile, dtype=int) - np.asarray(thumb, dtype=int)).mean() < 1
    rows = {line.split()[0]: int(line.split()[1]) for line in result.report.splitlines()[1:-1]}
    counted = Counter(f"{w}x{h}" for w, h in dataset.buckets())
    assert rows == counted and len(counted) >= 3


def test_preview_command_prints_bucket_statistics(export, tmp_path, capsys):
    out = export("jsonl")
    config = tmp_path / "loader.yaml"
    config.write_text("buckets: {min_bucket_reso: 128, max_bucket_reso: 512}\ncaption: {prefix: ohwx}\n")
    png = tmp_path / "preview.png"
    with pytest.warns(UserWarning, match=r"4 image\(s\) left out of every epoch"):
        code = main(
            [
                "preview",
                str(out),
                "--out",
                str(png),
                "--config",
                str(config),
                "--resolution",
                "256",
                "--batch-size",
                "2",
                "--drop-last",
            ]
        )
    printed = capsys.readouterr()
    assert code == 0
    assert png.is_file()
    assert "1 (drop_last: short of a batch of 2)" in printed.out
    assert "10 image(s), batch size 2" in printed.out
    assert f"wrote {png}" in printed.out and "ohwx, " in printed.out


def test_preview_of_a_missing_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["preview", str(tmp_path / "nothing")]) == 2
    assert "dataset not found" in capsys.readouterr().err


def test_preview_of_webdataset_shards(export, tmp_path, capsys):
    out = export("webdataset", shard_size=4)
    png = tmp_path / "wds.png"
    assert main(["preview", str(out), "--out", str(png), "--resolution", "256", "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "10 image(s), batch size 2" in printed
    with Image.open(png) as grid:
        assert grid.size == (2 * TILE, TILE + 96)  # a full batch of the first bucket that fills
