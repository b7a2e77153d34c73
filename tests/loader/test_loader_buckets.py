"""Buckets follow kohya-ss/sd-scripts' rules on hand-checked cases; the sampler's batches are
single-bucket, reproducible, split over ranks like DistributedSampler, and say what they drop."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import loader_fixtures
import pytest

from captionary.errors import ConfigError
from captionary.loader import BucketBatchSampler, BucketConfig, Buckets, make_bucket_resolutions

varied = loader_fixtures.varied

# make_bucket_resolutions((512, 512), 256, 1024, 64), worked out by hand: area 262144; the square is
# 512; width 320 -> 262144 // 320 = 819 -> floor to 64 = 768; 384 -> 682 -> 640; 448 -> 585 -> 576;
# 704 and 768 -> 320; 832..1024 -> 256 (each also transposed).
SD15_BUCKETS = [
    (256, 832), (256, 896), (256, 960), (256, 1024), (320, 704), (320, 768), (384, 640), (448, 576),
    (512, 512), (576, 448), (640, 384), (704, 320), (768, 320), (832, 256), (896, 256), (960, 256),
    (1024, 256),
]  # fmt: skip


def test_predefined_resolutions_match_kohya():
    assert make_bucket_resolutions((512, 512), 256, 1024, 64) == SD15_BUCKETS
    assert Buckets(BucketConfig()).predefined == SD15_BUCKETS


@pytest.mark.parametrize(
    ("size", "bucket", "resized"),
    [
        # 1.5 is closer to 640/384 = 1.667 (error 0.167) than to 576/448 = 1.286 (0.214); the image is
        # less wide than the bucket, so the width is matched: scale 640/300, height 200 * 2.133 = 427
        ((300, 200), (640, 384), (640, 427)),
        ((200, 300), (384, 640), (427, 640)),
        # 256x256 is not a bucket: the square bucket (ratio error 0), scaled up 2x
        ((256, 256), (512, 512), (512, 512)),
        # ratio 2.667: 768/320 = 2.4 (error 0.267) beats 832/256 = 3.25 (0.583); wider than the bucket,
        # so the height is matched: scale 320/150, width 400 * 2.133 = 853
        ((400, 150), (768, 320), (853, 320)),
        # an image of exactly a bucket's size keeps it
        ((448, 576), (448, 576), (448, 576)),
        ((1024, 1024), (512, 512), (512, 512)),
    ],
)
def test_select_bucket_hand_checked(size, bucket, resized):
    choice = Buckets(BucketConfig()).select(*size)
    assert choice.reso == bucket
    assert choice.resized_size == resized
    assert choice.ar_error == pytest.approx(bucket[0] / bucket[1] - size[0] / size[1])


@pytest.mark.parametrize(
    ("size", "bucket", "resized"),
    [
        # smaller than the area: never upscaled, the bucket is the size floored to steps of 64
        ((300, 200), (256, 192), (300, 200)),
        # 1000x700 (ratio 1.4286) scaled to area 512^2: 611.96 x 428.37. Rounding the width: 576, the
        # height then 384 (ratio error 0.071); rounding the height: 384, the width then 512 (error
        # 0.095): the width wins, resized 576 x 403, floored to the bucket 576 x 384
        ((1000, 700), (576, 384), (576, 403)),
        # 1000x600: both roundings are exact (640x384); kohya's tie goes to the height
        ((1000, 600), (640, 384), (640, 384)),
    ],
)
def test_no_upscale_hand_checked(size, bucket, resized):
    choice = Buckets(BucketConfig(bucket_no_upscale=True)).select(*size)
    assert choice.reso == bucket
    assert choice.resized_size == resized


def test_resized_image_always_covers_its_bucket():
    buckets = Buckets(BucketConfig(resolution=1024, max_bucket_reso=2048))
    rng = random.Random(1)
    for _ in range(2000):
        w, h = rng.randint(64, 4000), rng.randint(64, 4000)
        choice = buckets.select(w, h)
        assert choice.reso in buckets.predefined
        assert choice.resized_size[0] >= choice.reso[0] and choice.resized_size[1] >= choice.reso[1]
        assert min(r - b for r, b in zip(choice.resized_size, choice.reso)) == 0


def test_bad_settings_name_the_value():
    with pytest.raises(ConfigError, match=r"min_bucket_reso \(600\) must be <= the resolution \(512\)"):
        BucketConfig(min_bucket_reso=600)
    with pytest.raises(ConfigError, match=r"max_bucket_reso \(512\) must be >= the resolution \(1024\)"):
        BucketConfig(resolution=1024, max_bucket_reso=512)
    with pytest.raises(ValueError, match="smaller than one bucket step"):
        Buckets(BucketConfig(bucket_no_upscale=True)).select(40, 500)


def _buckets(counts: dict[tuple[int, int], int]) -> list[tuple[int, int]]:
    out = [bucket for bucket, n in counts.items() for _ in range(n)]
    random.Random(0).shuffle(out)
    return out


COUNTS = {(512, 512): 23, (640, 384): 9, (384, 640): 4, (768, 320): 1}


def test_batches_are_single_bucket_and_cover_each_epoch():
    bucket_of = _buckets(COUNTS)
    sampler = BucketBatchSampler(bucket_of, batch_size=4, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 6 + 3 + 1 + 1
        for batch in batches:
            assert len({bucket_of[key.index] for key in batch}) == 1
            assert all(key.epoch == epoch for key in batch)
        assert sorted(key.index for batch in batches for key in batch) == list(range(len(bucket_of)))


def test_order_is_seeded_and_changes_per_epoch():
    bucket_of = _buckets(COUNTS)
    a, b = BucketBatchSampler(bucket_of, 4, seed=7), BucketBatchSampler(bucket_of, 4, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(BucketBatchSampler(bucket_of, 4, seed=8)) != first


def test_small_buckets_are_kept_or_dropped_out_loud():
    bucket_of = _buckets(COUNTS)
    kept = BucketBatchSampler(bucket_of, batch_size=4)
    assert "1 (kept)" in kept.report() and "3 (kept)" in kept.report()
    with pytest.warns(UserWarning, match=r"5 image\(s\) left out .* 768x320 \(1\)"):
        dropped = BucketBatchSampler(bucket_of, batch_size=4, drop_last=True)
    assert "1 (drop_last: short of a batch of 4)" in dropped.report()
    seen = {key.index for batch in dropped for key in batch}
    assert len(seen) == len(bucket_of) - 5
    assert all(len(batch) == 4 for batch in dropped)


def test_two_ranks_are_disjoint_and_cover_the_dataset():
    bucket_of = _buckets(COUNTS)
    ranks = [
        BucketBatchSampler(bucket_of, 4, seed=1, num_replicas=2, rank=r, even_batches=False) for r in (0, 1)
    ]
    for epoch in (0, 1):
        seen = []
        for sampler in ranks:
            sampler.set_epoch(epoch)
            batches = list(sampler)
            assert len(batches) == len(sampler)
            seen.append({key.index for batch in batches for key in batch})
            for batch in batches:
                assert len({bucket_of[key.index] for key in batch}) == 1
        assert not seen[0] & seen[1]
        assert seen[0] | seen[1] == set(range(len(bucket_of)))


def test_even_batches_pad_like_distributed_sampler():
    bucket_of = _buckets(COUNTS)  # 11 batches: rank 0 gets 6, rank 1 gets 5 + 1 repeated
    ranks = [BucketBatchSampler(bucket_of, 4, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    batches = [list(s) for s in ranks]
    assert [len(b) for b in batches] == [6, 6] == [len(s) for s in ranks]
    flat = [key.index for rank in batches for batch in rank for key in batch]
    assert set(flat) == set(range(len(bucket_of)))
    repeated = len(flat) - len(set(flat))
    assert repeated == len(batches[1][-1])  # exactly the one padding batch repeats samples
    with pytest.raises(ValueError, match=r"rank must be within 0\.\.1"):
        BucketBatchSampler(bucket_of, 4, num_replicas=2, rank=2)


def test_dataset_batches_share_one_tensor_shape(varied):
    pytest.importorskip("torch")
    from captionary.loader import ImageCaptionDataset, collate

    dataset = ImageCaptionDataset(
        varied, buckets={"resolution": 256, "min_bucket_reso": 128, "max_bucket_reso": 512}
    )
    sampler = BucketBatchSampler(dataset, batch_size=2, seed=0)
    shapes = set()
    for keys in itertools.islice(sampler, 20):
        batch = collate([dataset[k] for k in keys])
        w, h = batch["bucket"][0].tolist()
        assert batch["pixel_values"].shape[1:] == (3, h, w)
        assert (batch["bucket"] == batch["bucket"][0]).all()
        shapes.add((w, h))
    assert len(shapes) >= 3  # landscape, portrait and square buckets all occur


def test_kohya_repeat_folders(tmp_path):
    """`3_sks dog/` (no caption files): class tokens as caption, each image 3 times per epoch, each
    repeat with its own augmentation; `1_cat/` with a caption file: once."""
    pytest.importorskip("torch")
    from PIL import Image

    from captionary.loader import ImageCaptionDataset

    for folder, name in (("3_sks dog", "dog/00.jpg"), ("3_sks dog", "dog/01.jpg"), ("1_cat", "cat/00.jpg")):
        target = tmp_path / "train" / folder / name.replace("/", "_")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(loader_fixtures.SAMPLES / name) as image:
            image.convert("RGB").resize((300, 200)).save(target)
    (tmp_path / "train" / "1_cat" / "cat_00.txt").write_text("a grey cat\n")
    dataset = ImageCaptionDataset(
        tmp_path / "train",
        image={"crop": "random", "flip_p": 0.5},
        buckets={"resolution": 256, "min_bucket_reso": 128},
    )
    assert dataset.repeats() == [1, 3, 3]
    assert [r.captions for r in dataset.records] == [("a grey cat",), ("sks dog",), ("sks dog",)]
    sampler = BucketBatchSampler(dataset, batch_size=2, seed=0)
    keys = [key for batch in sampler for key in batch]
    assert len(keys) == 7 == sum(s.images for s in sampler.stats())
    assert Counter((k.index, k.repeat) for k in keys) == Counter(
        [(0, 0), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    )
    geometries = {(g["crop_top_left"], g["flipped"]) for g in (dataset[k] for k in keys if k.index == 1)}
    assert len(geometries) > 1  # the three repeats are not one frozen crop
