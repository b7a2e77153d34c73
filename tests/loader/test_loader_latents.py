"""Latent cache with a tiny random AutoencoderKL built here: the second epoch reads files (the VAE is not
called), tensors are equal to a direct encode, any setting that changes the tensor changes the key."""

from __future__ import annotations

from pathlib import Path

import loader_fixtures
import pytest

from captionary.errors import ConfigError
from captionary.loader import BucketBatchSampler, ImageCaptionDataset, LatentCache, collate

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
varied = loader_fixtures.varied

BUCKETS = {"resolution": 64, "min_bucket_reso": 32, "max_bucket_reso": 128, "bucket_reso_steps": 32}


@pytest.fixture
def vae():
    """A real AutoencoderKL with random weights (downsamples 2x), counting its encode calls."""
    torch.manual_seed(0)
    model = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=64,
    ).eval()
    model.calls = 0
    encode = model.encode

    def counting(x, *args, **kwargs):
        model.calls += x.shape[0]
        return encode(x, *args, **kwargs)

    model.encode = counting
    return model


def epoch(dataset, sampler, n, workers=0):
    sampler.set_epoch(n)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers
    )
    return {i: lat for batch in loader for i, lat in zip(batch["id"], batch["latents"])}


def test_second_epoch_reads_the_cache(varied, vae, tmp_path):
    cache = LatentCache(tmp_path / "latents", vae, vae_id="tiny-random-vae")
    dataset = ImageCaptionDataset(varied, buckets=BUCKETS, latents=cache)
    sampler = BucketBatchSampler(dataset, batch_size=2, seed=0)
    first = epoch(dataset, sampler, 0)
    assert vae.calls == len(dataset)
    files = sorted((tmp_path / "latents").rglob("*.safetensors"))
    assert len(files) == len(dataset)
    second = epoch(dataset, sampler, 1)
    assert vae.calls == len(dataset)  # not called again
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key])
    # the cached tensor is the VAE's posterior mean of the transformed image
    sample = dataset[0]
    with torch.no_grad():
        direct = vae.encode(dataset.pixels(0, {**dataset.geometry(0, 0)})[None]).latent_dist.mode()[0]
    w, h = sample["bucket"]
    assert sample["latents"].shape == (4, h // 2, w // 2)
    torch.testing.assert_close(sample["latents"], direct)


def test_prepared_cache_serves_worker_processes(varied, vae, tmp_path):
    cache = LatentCache(tmp_path / "latents", vae, vae_id="tiny-random-vae")
    dataset = ImageCaptionDataset(varied, buckets=BUCKETS, latents=cache)
    assert cache.prepare(dataset, batch_size=4, num_workers=2, progress=False) == len(dataset)
    assert cache.prepare(dataset, progress=False) == 0
    calls = vae.calls
    sampler = BucketBatchSampler(dataset, batch_size=2, seed=0)
    in_workers = epoch(dataset, sampler, 0, workers=2)  # the VAE is not pickled into workers
    assert len(in_workers) == len(dataset) and vae.calls == calls
    in_main = epoch(dataset, sampler, 0)
    for key in in_workers:
        assert torch.equal(in_workers[key], in_main[key])


def test_changing_the_resolution_or_the_image_invalidates(varied, vae, tmp_path):
    cache = LatentCache(tmp_path / "latents", vae, vae_id="tiny-random-vae")
    small = ImageCaptionDataset(varied, buckets=BUCKETS, latents=cache)
    cache.prepare(small, progress=False)
    calls = vae.calls
    larger = ImageCaptionDataset(
        varied, buckets={**BUCKETS, "resolution": 96, "max_bucket_reso": 192}, latents=cache
    )
    assert {
        str(larger.latents.path(larger, i, larger.geometry(i, 0))) for i in range(len(larger))
    }.isdisjoint(str(p) for p in (tmp_path / "latents").rglob("*.safetensors"))
    assert cache.prepare(larger, progress=False) == len(larger)
    assert vae.calls == calls + len(larger)
    other_vae = LatentCache(tmp_path / "latents", vae, vae_id="another-vae")
    small2 = ImageCaptionDataset(varied, buckets=BUCKETS, latents=other_vae)
    assert other_vae.prepare(small2, progress=False) == len(small2)
    # a changed image file gets a new key (size and mtime are part of it)
    path = Path(small.records[0].image)
    path.write_bytes(path.read_bytes() + b"\0")
    again = ImageCaptionDataset(varied, buckets=BUCKETS, latents=cache)
    assert cache.prepare(again, progress=False) == 1


def test_random_augmentation_is_never_frozen(varied, vae, tmp_path):
    cache = LatentCache(tmp_path / "latents", vae, vae_id="tiny-random-vae")
    with pytest.raises(ConfigError, match="crop='random' with a latent cache would freeze one random crop"):
        ImageCaptionDataset(varied, buckets=BUCKETS, image={"crop": "random"}, latents=cache)
    with pytest.raises(ConfigError, match=r"flip_p=0\.5 with a latent cache would freeze one flip"):
        ImageCaptionDataset(varied, buckets=BUCKETS, image={"flip_p": 0.5}, latents=cache)
    both = LatentCache(tmp_path / "flip", vae, vae_id="tiny-random-vae", flip_variant=True)
    dataset = ImageCaptionDataset(varied, buckets=BUCKETS, image={"flip_p": 0.5}, latents=both)
    both.prepare(dataset, progress=False)
    calls = vae.calls
    seen = set()
    for n in range(8):
        sample = dataset[(0, n)]
        geometry = dataset.geometry(0, n)
        with torch.no_grad():
            direct = vae.encode(dataset.pixels(0, geometry)[None]).latent_dist.mode()[0]
        torch.testing.assert_close(sample["latents"], direct)
        seen.add(sample["flipped"])
    assert seen == {True, False}
    assert vae.calls == calls + 8  # only the direct encodes above


def test_a_miss_without_a_vae_says_what_to_do(varied, tmp_path):
    cache = LatentCache(tmp_path / "latents", vae_id="tiny-random-vae")
    dataset = ImageCaptionDataset(varied, buckets=BUCKETS, latents=cache)
    with pytest.raises(ConfigError, match=r"latent cache miss for .*prepare\(dataset\) first"):
        dataset[0]


def test_a_tiny_autoencoder_works_too(varied, tmp_path):
    torch.manual_seed(0)
    taesd = diffusers.AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).eval()
    cache = LatentCache(tmp_path / "taesd", taesd, vae_id="tiny-random-taesd")
    dataset = ImageCaptionDataset(varied, buckets=BUCKETS, latents=cache)
    assert cache.prepare(dataset, progress=False) == len(dataset)
    sample = dataset[0]
    w, h = sample["bucket"]
    assert sample["latents"].shape == (4, h // 8, w // 8)
    with torch.no_grad():
        direct = taesd.encode(dataset.pixels(0, dataset.geometry(0, 0))[None]).latents[0]
    torch.testing.assert_close(sample["latents"], direct)
