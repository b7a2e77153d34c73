"""BucketBatchSampler: batches whose images all share one bucket, split over ranks like
`DistributedSampler` (rank r of world size w takes every w-th batch), reproducible per (seed, epoch)."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


class SampleKey(NamedTuple):
    """What the sampler hands the dataset: the index, the epoch and (for an image kohya repeats within
    an epoch) which repeat it is; together they seed the augmentation."""

    index: int
    epoch: int
    repeat: int = 0


@dataclass(frozen=True)
class BucketStats:
    bucket: tuple[int, int]
    images: int
    full_batches: int
    partial: int  # images in the last, smaller batch (kept), 0 if none
    dropped: int  # images left out (drop_last)


class BucketBatchSampler:
    """Same-bucket batches of `batch_size` for `torch.utils.data.DataLoader(batch_sampler=...)`.

    `buckets` is the bucket of every sample (or a dataset with `.buckets()` and `.repeats()`: kohya's
    `N_name` folders put each of their images N times in every epoch). A bucket's last batch may
    be smaller than `batch_size`; with `drop_last` those images are left out of the epoch, and both are
    reported (`report()`, and a warning when anything is dropped). With `num_replicas` > 1 and
    `even_batches` (default), batches are repeated from the start so every rank gets as many steps
    (DistributedSampler's padding); without it, the ranks' samples are disjoint and cover the dataset.
    """

    def __init__(
        self,
        buckets: Sequence[tuple[int, int]] | Any,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        even_batches: bool = True,
        repeats: Sequence[int] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if repeats is None and hasattr(buckets, "repeats"):
            repeats = buckets.repeats()
        if hasattr(buckets, "buckets"):
            buckets = buckets.buckets()
        self.bucket_of = [tuple(b) for b in buckets]
        repeats = [1] * len(self.bucket_of) if repeats is None else list(repeats)
        if len(repeats) != len(self.bucket_of):
            raise ValueError(f"{len(repeats)} repeats for {len(self.bucket_of)} samples")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.even_batches = even_batches
        self.epoch = 0
        self.groups: dict[tuple[int, int], list[tuple[int, int]]] = {}  # bucket -> (index, repeat)
        for index, (bucket, times) in enumerate(zip(self.bucket_of, repeats)):
            self.groups.setdefault(bucket, []).extend((index, r) for r in range(times))
        short = [s for s in self.stats() if s.dropped]
        if short:
            where = ", ".join(f"{s.bucket[0]}x{s.bucket[1]} ({s.dropped})" for s in short)
            warnings.warn(
                f"drop_last: {sum(s.dropped for s in short)} image(s) left out of every epoch, in bucket(s) "
                f"{where} (what is left after full batches of {batch_size}); pass drop_last=False to keep "
                "smaller batches",
                stacklevel=2,
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def stats(self) -> list[BucketStats]:
        out = []
        for bucket in sorted(self.groups):
            n = len(self.groups[bucket])
            rest = n % self.batch_size
            out.append(
                BucketStats(
                    bucket,
                    n,
                    n // self.batch_size,
                    0 if self.drop_last else rest,
                    rest if self.drop_last else 0,
                )
            )
        return out

    def report(self) -> str:
        """A table: images per bucket, full batches, the smaller last batch, what was dropped and why."""
        lines = [
            f"{'bucket':>11}  {'images':>6}  {'batches':>7}  {'last batch':>10}  dropped"
        ]  # with repeats
        for s in self.stats():
            last = f"{s.partial} (kept)" if s.partial else "-"
            batches = s.full_batches + (1 if s.partial else 0)  # a kept smaller batch is a batch too
            why = f"{s.dropped} (drop_last: short of a batch of {self.batch_size})" if s.dropped else "0"
            lines.append(f"{s.bucket[0]:>5}x{s.bucket[1]:<5}  {s.images:>6}  {batches:>7}  {last:>10}  {why}")
        total = sum(s.images for s in self.stats())
        lines.append(
            f"{len(self.groups)} bucket(s), {total} image(s), batch size {self.batch_size}, "
            f"{len(self)} batch(es) per epoch"
            + (f" on rank {self.rank} of {self.num_replicas}" if self.num_replicas > 1 else "")
        )
        return "\n".join(lines)

    def _all_batches(self) -> list[list[tuple[int, int]]]:
        rng = random.Random(f"{self.seed}:{self.epoch}")
        batches: list[list[tuple[int, int]]] = []
        for bucket in sorted(self.groups):
            indices = list(self.groups[bucket])
            if self.shuffle:
                rng.shuffle(indices)
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        if self.num_replicas > 1 and self.even_batches and batches:
            remainder = len(batches) % self.num_replicas
            if remainder:
                padding = self.num_replicas - remainder
                batches += [batches[i % len(batches)] for i in range(padding)]
        return batches

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for batch in self._all_batches()[self.rank :: self.num_replicas]:
            yield [SampleKey(i, self.epoch, r) for i, r in batch]

    def __len__(self) -> int:
        n = 0
        for indices in self.groups.values():
            full, rest = divmod(len(indices), self.batch_size)
            n += full + (1 if rest and not self.drop_last else 0)
        if self.num_replicas > 1:
            if self.even_batches:
                return -(-n // self.num_replicas)
            return len(range(self.rank, n, self.num_replicas))
        return n


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Rank and world size as given, else from torch.distributed when it is initialised."""
    if num_replicas is None or rank is None:
        try:
            import torch.distributed as dist

            initialised = dist.is_available() and dist.is_initialized()
        except ImportError:
            initialised = False
        num_replicas = (
            num_replicas if num_replicas is not None else (dist.get_world_size() if initialised else 1)
        )
        rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be within 0..{num_replicas - 1}; got {rank}")
    return num_replicas, rank
