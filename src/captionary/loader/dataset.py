"""ImageCaptionDataset: a map-style PyTorch dataset over any captionary export (or workspace)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from captionary.core.optional import require
from captionary.errors import ConfigError
from captionary.loader.buckets import BucketChoice, BucketConfig, Buckets
from captionary.loader.caption_transforms import CaptionTransform
from captionary.loader.config import from_dict, load_yaml
from captionary.loader.download import DownloadCache
from captionary.loader.image_transforms import ImageTransform
from captionary.loader.readers import detect_format, read_records
from captionary.loader.records import Record, open_image, probe_size
from captionary.loader.sampler import SampleKey

DEFAULT_CACHE = Path.home() / ".cache" / "captionary"


class ImageCaptionDataset:
    """Image-caption samples for training, read from a folder, file, glob, URL or workspace.

    `format` is detected (or one of `readers.FORMATS`); WebDataset shards give a streaming
    `WebDatasetImageCaptions` instead. `image`, `caption` and `buckets` take the settings objects or
    plain dicts (`config=` a YAML file or dict with those three sections). Each sample is a dict:
    `pixel_values` (3xHxW in [-1, 1]) or `latents` (with a `LatentCache`), `caption`, `id`,
    `original_size`, `crop_top_left`, `bucket`, `flipped`, plus the tokenizer's outputs (and the cached
    text-encoder outputs with a `TextEmbeddingCache`).

    Augmentation is seeded by (seed, epoch, index): index the dataset with the `SampleKey`s that
    `BucketBatchSampler` yields (or call `set_epoch`), and every worker process draws the same.
    """

    def __new__(cls, source: Any = None, format: str | None = None, **options: Any) -> Any:
        if cls is ImageCaptionDataset and (format or _detect(source)) == "webdataset":
            from captionary.loader.webdataset import WebDatasetImageCaptions

            return WebDatasetImageCaptions(source, **options)
        return super().__new__(cls)

    def __init__(
        self,
        source: Any,
        format: str | None = None,
        *,
        image: ImageTransform | dict[str, Any] | None = None,
        caption: CaptionTransform | dict[str, Any] | None = None,
        buckets: BucketConfig | dict[str, Any] | None = None,
        config: str | Path | dict[str, Any] | None = None,
        tokenizer: Any = None,
        latents: Any = None,
        text_cache: Any = None,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        on_error: str = "raise",
        probe_threads: int = 8,
        **reader_options: Any,
    ):
        require("torch", "loader")
        sections = _sections(config)
        self.image_transform = from_dict(ImageTransform, image or sections.get("image"), "image")
        self.caption_transform = from_dict(CaptionTransform, caption or sections.get("caption"), "caption")
        self.bucket_config = from_dict(BucketConfig, buckets or sections.get("buckets"), "buckets")
        self.format = format or detect_format(source)
        self.source = source
        self.records: list[Record] = read_records(source, self.format, **reader_options)
        if not self.records:
            raise ConfigError(f"{source}: no images found (format {self.format})")
        self.downloads = DownloadCache(Path(cache_dir or DEFAULT_CACHE) / "downloads")
        urls = [r.image for r in self.records if isinstance(r.image, str) and r.image.startswith("http")]
        if urls:
            self.downloads.fetch(urls)
        self.tokenizer = tokenizer
        self.latents = latents
        self.seed = seed
        self.epoch = 0
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
        self.bucketer = Buckets(self.bucket_config)
        self.skipped: list[tuple[str, str]] = []  # (where, why) of images left out (on_error="skip")
        self.sizes: list[tuple[int, int]] = []
        self.choices: list[BucketChoice] = []
        self._measure(probe_threads, on_error == "skip")
        if not self.records:
            raise ConfigError(f"{source}: no readable images ({len(self.skipped)} skipped)")
        if latents is not None:
            latents.check(self.image_transform)
        self.text_cache = text_cache
        if text_cache is not None:
            text_cache.check(self.caption_transform)

    def _measure(self, threads: int, skip: bool) -> None:
        """Every image's size (headers only, in threads) and bucket; a bad one raises or is skipped."""

        def measure(record: Record) -> tuple[tuple[int, int], BucketChoice] | str:
            try:
                size = probe_size(record, self.downloads)
                return size, self.bucketer.select(*size)
            except ValueError as exc:
                message = str(exc)
                where = record.where or record.id
                return message if message.startswith(where) else f"{where}: {message}"

        kept = []
        with ThreadPoolExecutor(max(1, threads)) as pool:
            for record, result in zip(self.records, pool.map(measure, self.records)):
                if isinstance(result, str):
                    if not skip:
                        raise ConfigError(f"{result} (pass on_error='skip' to leave such images out)")
                    self.skipped.append((record.where or record.id, result))
                    continue
                kept.append(record)
                self.sizes.append(result[0])
                self.choices.append(result[1])
        self.records = kept

    def __len__(self) -> int:
        return len(self.records)

    def buckets(self) -> list[tuple[int, int]]:
        """The bucket (width, height) of every sample, for `BucketBatchSampler`."""
        return [c.reso for c in self.choices]

    def repeats(self) -> list[int]:
        """How often each sample comes in an epoch (kohya's `N_name` folders; else 1)."""
        return [r.repeats for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int, epoch: int, stream: str, repeat: int = 0) -> random.Random:
        return random.Random(f"{self.seed}:{epoch}:{index}:{stream}" + (f":{repeat}" if repeat else ""))

    def geometry(self, index: int, epoch: int, repeat: int = 0) -> dict[str, Any]:
        return self.image_transform.geometry(
            self.sizes[index], self.choices[index], self.rng(index, epoch, "image", repeat)
        )

    def pixels(self, index: int, geometry: dict[str, Any]) -> Any:
        """The training tensor of sample `index` with the given crop and flip."""
        image = open_image(self.records[index], self.downloads, min_size=geometry["resized_size"])
        return self.image_transform.to_tensor(self.image_transform.pixels(image, geometry))

    def caption(self, index: int, epoch: int, repeat: int = 0) -> str:
        rng = self.rng(index, epoch, "caption", repeat)
        return self.caption_transform(self.records[index].captions, rng)

    def __getitem__(self, key: int | SampleKey | tuple[int, ...]) -> dict[str, Any]:
        if isinstance(key, int):
            index, epoch, repeat = key, self.epoch, 0
        else:
            index, epoch, repeat = int(key[0]), int(key[1]), int(key[2]) if len(key) > 2 else 0
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} samples")
        record = self.records[index]
        geometry = self.geometry(index, epoch, repeat)
        sample: dict[str, Any] = {"id": record.id, "caption": self.caption(index, epoch, repeat), **geometry}
        if self.latents is not None:
            sample["latents"] = self.latents.get(self, index, geometry)
        else:
            sample["pixel_values"] = self.pixels(index, geometry)
        if self.tokenizer is not None:
            sample.update(self.tokenizer(sample["caption"]))
        if self.text_cache is not None:
            sample.update(self.text_cache.get(sample["caption"]))
        return sample

    def __repr__(self) -> str:
        return f"ImageCaptionDataset({self.source!r}, format={self.format!r}, {len(self)} samples)"


def _detect(source: Any) -> str | None:
    try:
        return detect_format(source)
    except ConfigError:
        return None


def _sections(config: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    data = load_yaml(config) if isinstance(config, (str, Path)) else dict(config)
    unknown = sorted(set(data) - {"image", "caption", "buckets"})
    if unknown:
        raise ConfigError(f"{config}: unknown section(s) {unknown}; valid: image, caption, buckets")
    return data
