"""Pairs: the near-duplicate pairs a search found, as three parallel numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Pairs:
    """Item index pairs `left[k] < right[k]` and their `distance` (Hamming bits, or 1 - cosine)."""

    left: np.ndarray
    right: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.left)

    @classmethod
    def empty(cls) -> Pairs:
        import numpy as np

        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @classmethod
    def unique(cls, left: np.ndarray, right: np.ndarray, distance: np.ndarray) -> Pairs:
        """One row per (left, right), sorted; rows with left >= right are expected to be removed already."""
        import numpy as np

        if len(left) == 0:
            return cls.empty()
        key = left.astype(np.int64) * (int(right.max()) + 1) + right
        _, first = np.unique(key, return_index=True)
        return cls(left[first].astype(np.int64), right[first].astype(np.int64), distance[first])
