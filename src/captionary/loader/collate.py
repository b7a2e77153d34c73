"""collate: a list of sample dicts -> one dict (tensors stacked, numbers and tuples as tensors,
strings and everything else as lists)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch. Tensors must share a shape (same bucket); the error names the key and shapes."""
    import torch

    if not samples:
        raise ValueError("cannot collate an empty batch")
    keys = samples[0].keys()
    for number, sample in enumerate(samples[1:], start=1):
        if sample.keys() != keys:
            raise ValueError(f"sample {number} has keys {sorted(sample)}, sample 0 has {sorted(keys)}")
    batch: dict[str, Any] = {}
    for key in keys:
        values = [s[key] for s in samples]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"cannot stack {key!r}: shapes differ {sorted(shapes)}; use BucketBatchSampler "
                    "so that a batch holds one bucket"
                )
            batch[key] = torch.stack(values)
        elif _numeric(first):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = list(values)
    return batch


def _numeric(value: Any) -> bool:
    """A number, a bool, or a tuple of numbers (sizes, crop offsets)."""
    if isinstance(value, tuple):
        return bool(value) and all(isinstance(x, (int, float)) for x in value)
    return isinstance(value, (int, float))
