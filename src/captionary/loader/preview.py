"""preview: a PNG grid of one real augmented batch (captions, bucket sizes) and the bucket statistics."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionary.loader.records import probe_size

TILE = 256


@dataclass(frozen=True)
class Preview:
    path: Path
    report: str  # the sampler's bucket table
    captions: list[str]
    buckets: list[tuple[int, int]]


def preview(
    source: Any,
    out: str | Path = "preview.png",
    *,
    batch_size: int = 8,
    seed: int = 0,
    epoch: int = 0,
    drop_last: bool = False,
    **dataset_options: Any,
) -> Preview:
    """Draw the first full batch the sampler yields for `epoch` (after augmentation; the largest
    batch when none is full) into `out`."""
    from captionary.loader.dataset import ImageCaptionDataset
    from captionary.loader.image_transforms import to_pil
    from captionary.loader.sampler import BucketBatchSampler
    from captionary.loader.webdataset import WebDatasetImageCaptions

    dataset_options.setdefault("on_error", "skip")  # a preview reports bad images rather than stopping
    dataset = ImageCaptionDataset(source, seed=seed, **dataset_options)
    if isinstance(dataset, WebDatasetImageCaptions):  # a stream: its first bucketed batch; sizes from headers
        dataset.batch_size = batch_size
        dataset.set_epoch(epoch)
        samples = next(iter(dataset))
        skipped: list[tuple[str, str]] = []
        buckets_of = [b for b in map(_bucket(dataset, skipped), dataset.records()) if b is not None]
        sampler = BucketBatchSampler(buckets_of, batch_size, seed=seed, drop_last=drop_last)
    else:
        sampler = BucketBatchSampler(dataset, batch_size, seed=seed, drop_last=drop_last)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        full = [batch for batch in batches if len(batch) == batch_size]
        samples = [dataset[key] for key in (full or sorted(batches, key=len, reverse=True))[0]]
        skipped = dataset.skipped
    normalized = dataset.image_transform.normalize
    images = [to_pil(s["pixel_values"], normalized) for s in samples]
    captions = [s["caption"] for s in samples]
    buckets = [tuple(s["bucket"]) for s in samples]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _grid(images, captions, buckets, [s["flipped"] for s in samples]).save(out, format="PNG")
    report = sampler.report()
    if skipped:
        lines = [f"  {why}" for _, why in skipped]
        report += f"\n{len(skipped)} image(s) skipped (unreadable or too small):\n" + "\n".join(lines)
    return Preview(out, report, captions, buckets)


def preview_path(dataset: str) -> Path:
    """Where `captionary preview` writes without `--out`: inside a workspace, or a temp folder (never
    the current folder, nor an export a trainer would read)."""
    import tempfile

    folder = Path(dataset)
    if (folder / "captionary.db").is_file():
        return folder / "preview.png"
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in folder.name or "dataset")
    return Path(tempfile.gettempdir()) / "captionary-preview" / f"{name}.png"


def _bucket(dataset: Any, skipped: list[tuple[str, str]]) -> Any:
    """A stream record's bucket from its header; an unusable image goes to `skipped` (None)."""

    def bucket(record: Any) -> tuple[int, int] | None:
        try:
            return dataset.bucketer.select(*probe_size(record)).reso
        except ValueError as exc:
            skipped.append((record.where, str(exc)))
            return None

    return bucket


def _grid(images: list[Any], captions: list[str], buckets: list[tuple[int, int]], flips: list[bool]) -> Any:
    from PIL import Image, ImageDraw, ImageFont

    columns = min(4, len(images))
    rows = -(-len(images) // columns)
    text_height = 96
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + text_height)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for n, (image, caption, bucket, flipped) in enumerate(zip(images, captions, buckets, flips)):
        x, y = (n % columns) * TILE, (n // columns) * (TILE + text_height)
        thumb = image.copy()
        thumb.thumbnail((TILE - 8, TILE - 8))
        sheet.paste(thumb, (x + (TILE - thumb.width) // 2, y + (TILE - thumb.height) // 2))
        label = f"{bucket[0]}x{bucket[1]}" + (" flipped" if flipped else "")
        lines = [label, *textwrap.wrap(caption or "(empty caption)", 40)[:5]]
        draw.multiline_text((x + 4, y + TILE + 2), "\n".join(lines), fill="black", font=font)
    return sheet
