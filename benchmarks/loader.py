"""Training-loader throughput: samples/s of one DataLoader epoch over N images of ~1024 px.

Three paths in the same run, on the same files, with the same DataLoader settings (2 workers):
  plain     a torchvision-free Pillow Dataset written by hand (the baseline): decode, resize to cover
            1024x1024, center crop, to a [-1, 1] tensor; default collate. Scaling the shorter edge to
            1024 enlarges a 16:9 image to 1820x1024 before the crop, where a bucket keeps the area near
            1024^2: that is part of the difference to the next row.
  decode    captionary.loader: ImageCaptionDataset (kohya buckets at 1024, center crop) +
            BucketBatchSampler + collate: decode, resize to the bucket, crop, to tensor, captions
  latents   the same dataset with a LatentCache: each sample reads its safetensors file
The images (from the DreamBooth photos, cropped to varied aspect ratios, resized to ~1024x1024 px of
area) and the latent files are made once into --cache and reused. The latents are made by a one-layer
8x-downsampling conv encoder with the SD VAE's latent shape (4 x H/8 x W/8), because a real VAE is not
available offline here: VAE encode time is not part of what is measured, only reading the cache.

    python benchmarks/loader.py                 # 2,000 images
    python benchmarks/loader.py --count 500 --workers 2 --batch-size 8
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captionary.loader import BucketBatchSampler, ImageCaptionDataset, LatentCache, collate

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "dreambooth"
EDGE = 1024


def make_image(job: tuple[Path, Path, int]) -> None:
    """One ~1024 px image (area 1024^2) cropped from a photo at a random aspect ratio, with a caption."""
    source, target, seed = job
    rng = random.Random(seed)
    with Image.open(source) as image:
        image = image.convert("RGB")
        ratio = rng.choice([1.0, 1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16])
        w, h = image.size
        cw, ch = (w, round(w / ratio)) if w / ratio <= h else (round(h * ratio), h)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = image.crop((left, top, left + cw, top + ch))
        width = round((EDGE * EDGE * ratio) ** 0.5)
        image = image.resize((width, round(width / ratio)), Image.Resampling.LANCZOS)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=90)
    target.with_suffix(".txt").write_text(f"a photo of {source.parent.name.replace('_', ' ')}, seed {seed}\n")


def make_images(folder: Path, count: int, workers: int) -> None:
    photos = sorted(PHOTOS.rglob("*.jpg")) or sorted((REPO / "examples" / "photos").rglob("*.jpg"))
    jobs = [(photos[n % len(photos)], folder / f"{n // 100:03d}" / f"{n:05d}.jpg", n) for n in range(count)]
    jobs = [job for job in jobs if not job[1].with_suffix(".txt").exists()]
    if jobs:
        print(f"making {len(jobs)} images in {folder} (once) ...", flush=True)
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(make_image, jobs, chunksize=16))


class PlainPillowDataset(torch.utils.data.Dataset):
    """The baseline a person writes by hand: one fixed 1024x1024 size, no buckets."""

    def __init__(self, folder: Path):
        self.paths = sorted(folder.rglob("*.jpg"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = EDGE / min(image.size)
            size = (max(EDGE, round(image.width * scale)), max(EDGE, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
            left, top = (size[0] - EDGE) // 2, (size[1] - EDGE) // 2
            image = image.crop((left, top, left + EDGE, top + EDGE))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        caption = path.with_suffix(".txt").read_text().strip()
        return {"pixel_values": pixels.float() / 127.5 - 1, "caption": caption}


class StridedConvEncoder(torch.nn.Module):
    """A stand-in VAE encoder with the SD latent shape: one 8x8 stride-8 conv -> mean and log-variance."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=8, stride=8)

    def encode(self, pixels: torch.Tensor):
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        class Output:
            latent_dist = DiagonalGaussianDistribution(self.conv(pixels))

        return Output()


def epoch(loader) -> tuple[float, int]:
    start = time.perf_counter()
    n = 0
    for batch in loader:
        key = "latents" if "latents" in batch else "pixel_values"
        n += batch[key].shape[0]
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "captionary-bench-loader")
    args = parser.parse_args()
    folder = args.cache / f"images-{args.count}"
    make_images(folder, args.count, max(1, args.workers))
    torch.set_num_threads(1)

    buckets = {"resolution": EDGE, "min_bucket_reso": 512, "max_bucket_reso": 2048}
    common = {"num_workers": args.workers, "persistent_workers": False}

    plain = PlainPillowDataset(folder)
    plain_loader = torch.utils.data.DataLoader(plain, batch_size=args.batch_size, **common)

    start = time.perf_counter()
    ours = ImageCaptionDataset(folder, buckets=buckets, cache_dir=args.cache)
    setup_s = time.perf_counter() - start
    sampler = BucketBatchSampler(ours, args.batch_size, seed=0)
    ours_loader = torch.utils.data.DataLoader(ours, batch_sampler=sampler, collate_fn=collate, **common)

    cache = LatentCache(args.cache / "latents", StridedConvEncoder(), vae_id="strided-conv-standin")
    cached = ImageCaptionDataset(folder, buckets=buckets, latents=cache, cache_dir=args.cache)
    start = time.perf_counter()
    made = cache.prepare(cached, batch_size=8, num_workers=args.workers)
    prepare_s = time.perf_counter() - start
    cached_sampler = BucketBatchSampler(cached, args.batch_size, seed=0)
    cached_loader = torch.utils.data.DataLoader(
        cached, batch_sampler=cached_sampler, collate_fn=collate, **common
    )

    rows = []
    for name, loader in (
        ("plain Pillow Dataset, 1024x1024 (baseline)", plain_loader),
        ("captionary decode + transform, buckets", ours_loader),
        ("captionary cached latents", cached_loader),
    ):
        seconds, n = epoch(loader)
        rows.append((name, seconds, n))
    base = rows[0][2] / rows[0][1]
    print(
        f"\n{args.count} images of ~1024x1024 px, batch {args.batch_size}, {args.workers} DataLoader workers"
    )
    print(f"{'path':46}{'epoch s':>9}{'samples/s':>11}{'vs plain':>10}")
    for name, seconds, n in rows:
        print(f"{name:46}{seconds:9.2f}{n / seconds:11.1f}{n / seconds / base:9.2f}x")
    print(
        f"\ndataset set-up (read + probe {len(ours)} headers, buckets): {setup_s:.2f} s; "
        f"latents made this run: {made} ({prepare_s:.1f} s, stand-in encoder); "
        f"{len(set(ours.buckets()))} buckets"
    )


if __name__ == "__main__":
    main()
