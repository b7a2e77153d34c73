"""Near-duplicate search over 64-bit perceptual hashes: multi-index hashing, never all pairs.

Two hashes within Hamming distance `t` agree, in at least one of `m` bands (disjoint bit ranges), to
within `r_j` bits, whenever sum(r_j + 1) > t (pigeonhole; Norouzi et al., "Fast Search in Hamming
Space with Multi-Index Hashing", CVPR 2012). So for each band and each flip mask of at most `r_j`
bits, every item looks up the bucket of its band value XOR the mask, and only the items found there
are compared. The result is exact: the same pairs as comparing every pair. The number of bands comes
from a cost model (bucket probes vs. candidates to check); the probes are split over processes.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING

from captionary.steps.dedup.pairs import Pairs

if TYPE_CHECKING:
    import numpy as np

BITS = 64
CANDIDATE_COST = 5.0  # checking one candidate pair costs about 5 bucket probes (measured)
PAIR_COST = 1 / 30  # comparing one pair directly costs about 1/30 of a bucket probe (measured)
MAX_BAND_BITS = 26  # a band's bucket table has 2**bits counts: 512 MB while it is built, at 26
POOL_FROM = 100_000  # fewer hashes are searched in this process (starting workers costs more)

Band = tuple[int, int, int]
"""(first bit, width in bits, search radius in bits)."""


def hamming_pairs(hashes: np.ndarray, threshold: int, *, workers: int | None = None) -> Pairs:
    """Every pair (i < j) of `hashes` (uint64) within Hamming distance `threshold` (0..63)."""
    import numpy as np

    codes = np.ascontiguousarray(hashes, dtype=np.uint64)
    if len(codes) < 2:
        return Pairs.empty()
    cost, plan = best_plan(len(codes), threshold)
    if cost > len(codes) ** 2 / 2 * PAIR_COST:  # a loose threshold: comparing every pair is cheaper
        return Pairs.unique(*_all_pairs(codes, threshold))
    tasks = [(band, first, last) for band in plan for first, last in _split(_n_masks(band), 16)]
    workers = min(len(tasks), workers or cpu_count())
    if workers > 1 and len(codes) >= POOL_FROM:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            chunks = [tasks[i::workers] for i in range(workers)]
            found = list(pool.map(_search, [codes] * workers, [threshold] * workers, chunks))
    else:
        found = [_search(codes, threshold, tasks)]
    return Pairs.unique(*(np.concatenate([f[k] for f in found]) for k in range(3)))


def cross_pairs(
    queries: np.ndarray, keys: np.ndarray, threshold: int, *, workers: int | None = None
) -> Pairs:
    """Every (query index, key index) of `queries` and `keys` (uint64) within Hamming distance
    `threshold`, by the same multi-index search: the keys are tabled per band, the queries look up
    their band values under every mask (split over processes for large inputs, as `hamming_pairs`).
    `Pairs.left` holds query indices, `right` key indices."""
    import numpy as np

    queries = np.ascontiguousarray(queries, dtype=np.uint64)
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if len(queries) == 0 or len(keys) == 0:
        return Pairs.empty()
    plan = band_plan(len(keys), threshold)
    tasks = [(band, first, last) for band in plan for first, last in _split(_n_masks(band), 16)]
    workers = min(len(tasks), workers or cpu_count())
    if workers > 1 and len(queries) + len(keys) >= POOL_FROM:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            chunks = [tasks[i::workers] for i in range(workers)]
            found = list(
                pool.map(_cross_search, [queries] * workers, [keys] * workers, [threshold] * workers, chunks)
            )
    else:
        found = [_cross_search(queries, keys, threshold, tasks)]
    left, right, distance = (np.concatenate([f[k] for f in found]) for k in range(3))
    order = np.lexsort((right, left))
    left, right, distance = left[order], right[order], distance[order]
    first = np.ones(len(left), dtype=bool)
    first[1:] = (left[1:] != left[:-1]) | (right[1:] != right[:-1])  # found in several bands: once
    return Pairs(left[first], right[first], distance[first].astype(np.float64))


def _cross_search(queries: np.ndarray, keys: np.ndarray, threshold: int, tasks: list) -> tuple:
    """The (query, key) pairs found by masks `first..last` of each task's band."""
    import numpy as np

    lefts, rights, dists = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
    table: _BandTable | None = None
    values = queries
    for band, first, last in tasks:
        if table is None or table.band != band:  # tasks arrive grouped by band
            table = _BandTable(keys, band)
            start, width, _ = band
            mask_bits = np.uint64((1 << width) - 1)
            values = ((queries >> np.uint64(start)) & mask_bits).astype(table.values.dtype)
        for mask in itertools.islice(_masks(band), first, last):
            found = table.lookup(values ^ mask)
            if found is None:
                continue
            query, key = found
            distance = np.bitwise_count(queries[query] ^ keys[key])
            close = distance <= threshold
            lefts.append(query[close])
            rights.append(key[close].astype(np.int64))
            dists.append(distance[close])
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(dists)


def band_plan(n: int, threshold: int) -> list[Band]:
    """Bands that guarantee every pair within `threshold` is found, with the least estimated work
    for `n` uniformly spread hashes."""
    return best_plan(n, threshold)[1]


def best_plan(n: int, threshold: int) -> tuple[float, list[Band]]:
    """`band_plan` and its estimated cost (in bucket probes)."""
    if not 0 <= threshold < BITS:
        raise ValueError(f"Hamming threshold must be 0..{BITS - 1}; got {threshold}")
    best: tuple[float, list[Band]] | None = None
    for m in range(1, 9):
        widths = [BITS // m + (1 if j < BITS % m else 0) for j in range(m)]
        quota, extra = divmod(threshold + 1, m)  # the radii + 1 must add up to threshold + 1
        radii = [quota - 1 + (1 if j < extra else 0) for j in range(m)]
        if max(widths) > MAX_BAND_BITS:
            continue  # a bucket table's counts would not fit in memory
        cost = sum(
            _n_masks((0, w, r)) * n * (1.0 + CANDIDATE_COST * n / 2.0**w) + 2.0**w
            for w, r in zip(widths, radii)
            if r >= 0  # more bands than threshold + 1: the others need not be searched
        )
        if best is None or cost < best[0]:
            starts = itertools.accumulate([0, *widths[:-1]])
            best = (cost, [band for band in zip(starts, widths, radii) if band[2] >= 0])
    assert best is not None  # m = 2 always fits
    return best


def _search(codes: np.ndarray, threshold: int, tasks: list[tuple[Band, int, int]]) -> tuple:
    """The pairs found by masks `first..last` (in `_masks` order) of each task's band."""
    import numpy as np

    lefts, rights, dists = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
    table: _BandTable | None = None
    for band, first, last in tasks:
        if table is None or table.band != band:  # tasks arrive grouped by band
            table = _BandTable(codes, band)
        for mask in itertools.islice(_masks(band), first, last):
            found = table.probe(mask)
            if found is None:
                continue
            query, match = found
            distance = np.bitwise_count(codes[query] ^ codes[match])
            close = distance <= threshold
            lefts.append(np.minimum(query, match)[close])
            rights.append(np.maximum(query, match)[close])
            dists.append(distance[close])
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(dists)


class _BandTable:
    """One band's bucket table: items sorted by band value, and per value its bucket's size and start.

    A pair whose band values differ by mask M is found once, from the item whose value lacks M's
    highest bit, so each probe with M != 0 looks up only half of the items.
    """

    def __init__(self, codes: np.ndarray, band: Band):
        import numpy as np

        self.band = band
        start, width, _ = band
        index = np.int32 if len(codes) < 2**31 else np.int64
        values = (codes >> np.uint64(start)) & np.uint64((1 << width) - 1)
        self.values = values.astype(np.int32 if width < 31 else np.int64)
        self.order = np.argsort(self.values, kind="stable").astype(index)
        sizes = np.bincount(self.values, minlength=1 << width)
        self.offsets = (np.cumsum(sizes) - sizes).astype(index)
        top = int(sizes.max())
        self.sizes = sizes.astype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.int64)
        self.index = index
        self._lacking: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def probe(self, mask: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(query, match) item indices whose band values differ by exactly `mask`."""

        if mask:
            items, values = self.lacking(mask.bit_length() - 1)
            found = self.lookup(values ^ mask)
        else:
            items, found = None, self.lookup(self.values)
        if found is None:
            return None
        query, match = found
        if items is not None:
            return items[query], match
        keep = query < match  # a bucket's pairs, each once
        return query[keep], match[keep]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(position in `keys`, item) for every item whose band value is one of `keys`."""
        import numpy as np

        found = self.sizes[keys]
        queries = np.flatnonzero(found)
        if len(queries) == 0:
            return None
        sizes = found[queries].astype(np.int64)
        ends = np.cumsum(sizes)
        within = np.arange(int(ends[-1]), dtype=np.int64) - np.repeat(ends - sizes, sizes)
        match = self.order[np.repeat(self.offsets[keys[queries]], sizes) + within]
        return np.repeat(queries, sizes), match

    def lacking(self, bit: int) -> tuple[np.ndarray, np.ndarray]:
        """The items whose band value has `bit` clear, and those values, in value order (so that
        the bucket lookups of one mask walk the table almost sequentially: cache-friendly)."""
        if bit not in self._lacking:
            values = self.values[self.order]
            clear = (values >> bit) & 1 == 0
            self._lacking[bit] = (self.order[clear], values[clear])
        return self._lacking[bit]


def _all_pairs(codes: np.ndarray, threshold: int, block: int = 256) -> tuple:
    """Every pair compared (blocks of rows against the rest)."""
    import numpy as np

    lefts, rights, dists = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.uint8)]
    for start in range(0, len(codes) - 1, block):
        rows = codes[start : start + block]
        distance = np.bitwise_count(rows[:, None] ^ codes[None, start + 1 :])
        i, j = np.nonzero(distance <= threshold)
        left, right = start + i, start + 1 + j
        later = left < right
        lefts.append(left[later])
        rights.append(right[later])
        dists.append(distance[i, j][later])
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(dists)


def _masks(band: Band):
    """Every mask of the band's width with at most its radius bits set, 0 first."""
    _, width, radius = band
    for k in range(radius + 1):
        for bits in itertools.combinations(range(width), k):
            yield sum(1 << b for b in bits)


def _n_masks(band: Band) -> int:
    _, width, radius = band
    return sum(math.comb(width, k) for k in range(radius + 1))


def _split(total: int, parts: int) -> list[tuple[int, int]]:
    step = max(1, math.ceil(total / parts))
    return [(i, min(total, i + step)) for i in range(0, total, step)]


def cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
