"""WebDataset shards as a streaming `torch.utils.data.IterableDataset` (paths, brace patterns, http(s)
URLs, fsspec URLs such as `s3://bucket/shard-{000000..000099}.tar`, `pipe:` commands).

Shards are split over ranks and DataLoader workers (every worker of every rank reads its own shards;
with fewer shards than readers, samples are dealt round-robin instead). With `batch_size`, samples are
held per bucket and yielded as same-bucket lists; the smaller leftovers come out at the end.
"""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from captionary.core.wds_stream import is_local, open_shard, tar_samples
from captionary.errors import ConfigError
from captionary.loader.buckets import BucketConfig, Buckets
from captionary.loader.caption_transforms import CaptionTransform
from captionary.loader.config import from_dict
from captionary.loader.image_transforms import ImageTransform
from captionary.loader.records import Record, captions_of, open_image
from captionary.loader.sampler import _world

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSIONS = ("txt", "caption")


def _base() -> type:
    import torch.utils.data

    return torch.utils.data.IterableDataset


class WebDatasetImageCaptions(_base()):  # type: ignore[misc]
    """Samples of WebDataset shards: `key.jpg` + `key.txt` (caption) [+ `key.json`], transformed like
    `ImageCaptionDataset`'s. `set_epoch` reseeds the augmentation."""

    def __init__(
        self,
        shards: str | Path | list[str],
        *,
        image: ImageTransform | dict[str, Any] | None = None,
        caption: CaptionTransform | dict[str, Any] | None = None,
        buckets: BucketConfig | dict[str, Any] | None = None,
        config: str | Path | dict[str, Any] | None = None,
        tokenizer: Any = None,
        batch_size: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        timeout: float = 60.0,
        on_error: str = "raise",
        **unused: Any,
    ):
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
        if unused:
            raise ConfigError(f"WebDataset sources do not take {sorted(unused)}")
        from captionary.loader.dataset import _sections

        sections = _sections(config)
        self.urls = _expand(shards)
        self.image_transform = from_dict(ImageTransform, image or sections.get("image"), "image")
        self.caption_transform = from_dict(CaptionTransform, caption or sections.get("caption"), "caption")
        self.bucketer = Buckets(from_dict(BucketConfig, buckets or sections.get("buckets"), "buckets"))
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.seed = seed
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.timeout = timeout
        self.epoch = 0
        self.leftovers = 0  # samples yielded in smaller batches at the end of the last pass
        self.on_error = on_error
        self.skipped: list[tuple[str, str]] = []  # (where, why), this process's share (on_error="skip")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _reader(self) -> tuple[int, int]:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.num_replicas * workers

    def records(self) -> Iterator[Record]:
        """This reader's share of the raw records, in shard order."""
        reader, readers = self._reader()
        by_shard = len(self.urls) >= readers
        urls = self.urls[reader::readers] if by_shard else self.urls
        count = 0
        for url in urls:
            for record in _shard_records(url, self.timeout):
                if by_shard or count % readers == reader:
                    yield record
                count += 1

    def samples(self) -> Iterator[dict[str, Any]]:
        """Transformed samples; an unreadable (or, without upscaling, too small) image raises, naming the
        shard and key, or with `on_error="skip"` is left out and listed in `skipped`."""
        for record in self.records():
            try:
                yield self._sample(record)
            except ValueError as exc:
                if self.on_error == "raise":
                    raise ConfigError(
                        f"{record.where}: {exc} (pass on_error='skip' to leave it out)"
                    ) from None
                self.skipped.append((record.where, str(exc)))

    def __iter__(self) -> Iterator[Any]:
        samples = self.samples()
        if self.batch_size is None:
            yield from samples
            return
        held: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for sample in samples:
            group = held.setdefault(sample["bucket"], [])
            group.append(sample)
            if len(group) == self.batch_size:
                yield held.pop(sample["bucket"])
        self.leftovers = sum(len(g) for g in held.values())
        for bucket in sorted(held):
            yield held[bucket]

    def _sample(self, record: Record) -> dict[str, Any]:
        stream = f"{self.seed}:{self.epoch}:{record.id}"
        image = open_image(record)
        choice = self.bucketer.select(*image.size)
        geometry = self.image_transform.geometry(image.size, choice, random.Random(stream + ":image"))
        caption = self.caption_transform(record.captions, random.Random(stream + ":caption"))
        pixels = self.image_transform.to_tensor(self.image_transform.pixels(image, geometry))
        sample = {"id": record.id, "caption": caption, **geometry, "pixel_values": pixels}
        if self.tokenizer is not None:
            sample.update(self.tokenizer(caption))
        return sample


def _expand(shards: str | Path | list[str]) -> list[str]:
    if isinstance(shards, (list, tuple)):
        return [str(s) for s in shards]
    text = str(shards)
    if Path(text).is_dir():
        return sorted(str(p) for p in Path(text).glob("*.tar"))
    from captionary.core.optional import require

    braceexpand = require("braceexpand", "webdataset")
    urls = list(braceexpand.braceexpand(text))
    for url in urls:
        if is_local(url) and not Path(url).is_file():
            raise ConfigError(f"shard not found: {url}")
    return urls


def _shard_records(url: str, timeout: float) -> Iterator[Record]:
    """The shard's samples as records, streamed (`tar_samples`: the `webdataset` library's grouping)."""

    def damaged(offset: int, message: str) -> None:  # read past, never silently
        warnings.warn(f"{url}, byte {offset}: {message}", stacklevel=2)

    with open_shard(url, timeout) as stream:
        for key, members, _ in tar_samples(stream, damaged):
            yield _record(url, key, members)


def _record(url: str, key: str, members: dict[str, bytes]) -> Record:
    image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
    if image is None:
        raise ConfigError(f"{url}: sample {key!r} has no image ({', '.join(sorted(members))})")
    props: dict[str, Any] = {}
    if "json" in members:
        try:
            props = json.loads(members["json"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{url}: {key}.json: invalid JSON: {exc.msg}") from None
    text = next((members[e].decode("utf-8") for e in CAPTION_EXTENSIONS if e in members), None)
    captions = captions_of(text) if text is not None else captions_of(props.get("caption"))
    return Record(key, image, captions, None, f"{url}: {key}", props)
