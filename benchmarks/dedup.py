"""Dedup benchmark: near-duplicate search over perceptual hashes and over embeddings, at growing sizes,
against a brute-force baseline measured in the same run.

  * pHash: random 64-bit hashes with 1% planted near copies (1..8 bits flipped), threshold 8 bits;
    the multi-index search (`steps/dedup/hamming.py`) vs. comparing every pair (numpy popcount,
    measured on a subset, then scaled by (n / subset)^2, which is exact for an all-pairs scan).
  * Embeddings: 512-d vectors shaped like image embeddings (a shared direction, 2,000 topics, noise:
    random pairs ~0.3 cosine, same topic ~0.6) with 1% planted near copies (~0.98), threshold 0.95;
    the clustered search (`steps/dedup/semantic.py`) vs. one exact matrix product of every pair
    (measured on a subset, scaled the same way). Recall of the clustered search is measured against
    the exact pairs on the subset, and on the planted copies at every size.
  * growth: the exponent k in time ~ n^k between consecutive sizes (1 = linear, 2 = all pairs).

    python benchmarks/dedup.py                                # 10k, 100k, 1M of each (~10 min on 2 cores)
    python benchmarks/dedup.py --sizes 10000,100000           # quicker
    python benchmarks/dedup.py --only phash --sizes 1000000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from captionary.steps.dedup.hamming import cpu_count, hamming_pairs
from captionary.steps.dedup.semantic import cosine_pairs

HAMMING, COSINE, DIM = 8, 0.95, 512


def planted_hashes(n: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=n, dtype=np.int64).view(np.uint64) * np.uint64(2)
    codes |= rng.integers(0, 2, size=n).astype(np.uint64)
    copies = rng.choice(n, size=2 * (n // 100), replace=False).reshape(-1, 2)
    for k, (a, b) in enumerate(copies):
        flips = rng.choice(64, size=1 + k % HAMMING, replace=False)
        codes[b] = codes[a] ^ np.uint64(sum(1 << int(bit) for bit in flips))
    return codes, {(min(a, b), max(a, b)) for a, b in copies.tolist()}


def brute_hamming(codes: np.ndarray) -> int:
    found = 0
    for i in range(len(codes) - 1):
        found += int(np.count_nonzero(np.bitwise_count(codes[i] ^ codes[i + 1 :]) <= HAMMING))
    return found


def embeddings(n: int, seed: int = 0) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(DIM).astype(np.float32)
    shared /= np.linalg.norm(shared)
    topics = rng.standard_normal((2000, DIM)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    x = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        rows = min(100_000, n - start)
        noise = rng.standard_normal((rows, DIM), dtype=np.float32) * np.float32(0.7 / math.sqrt(DIM))
        x[start : start + rows] = 0.6 * shared + 0.6 * topics[rng.integers(0, 2000, rows)] + noise
    copies = rng.choice(n, size=2 * (n // 100), replace=False).reshape(-1, 2)
    jitter = rng.standard_normal((len(copies), DIM), dtype=np.float32) * np.float32(0.15 / math.sqrt(DIM))
    x[copies[:, 1]] = x[copies[:, 0]] + jitter
    return x, {(min(a, b), max(a, b)) for a, b in copies.tolist()}


def brute_cosine(x: np.ndarray) -> set[tuple[int, int]]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    found = set()
    for start in range(0, len(unit), 4096):
        sim = unit[start : start + 4096] @ unit.T
        i, j = np.nonzero(sim >= COSINE)
        found.update((start + a, b) for a, b in zip(i.tolist(), j.tolist()) if start + a < b)
    return found


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def pairs_set(pairs) -> set[tuple[int, int]]:
    return set(zip(pairs.left.tolist(), pairs.right.tolist()))


def scaling_rows(task, sizes, make, find, brute_s, subset) -> None:
    """A row per size: `find` on `make(n)`'s data, recall of its planted pairs, the brute-force time
    extrapolated from `subset` rows (n^2), and how the time grew against the size before."""
    previous = None
    for n in sizes:
        data, planted = make(n)
        pairs, seconds = timed(find, data)
        del data
        recall = len(pairs_set(pairs) & planted) / len(planted)
        growth = f"{math.log(seconds / previous[1]) / math.log(n / previous[0]):.2f}" if previous else "-"
        row(task, n, seconds, len(pairs), f"{recall:.4f}", brute_s * (n / subset) ** 2, growth)
        previous = (n, seconds)


def row(task, n, seconds, found, recall, brute, growth) -> None:
    speedup = f"{brute / seconds:,.0f}x" if brute else "-"
    print(
        f"| {task:<9} | {n:>9,} | {seconds:>8.1f} | {found:>7,} | {recall:>11} | {brute:>10,.1f} | "
        f"{speedup:>8} | {growth:>6} |",
        flush=True,
    )


def bench_phash(sizes: list[int], subset: int) -> None:
    codes, _ = planted_hashes(subset, seed=1)
    exact, brute_s = timed(brute_hamming, codes)
    fast, fast_s = timed(hamming_pairs, codes, HAMMING)
    same = "same pairs" if len(fast) == exact else f"{len(fast)} vs {exact}"
    print(f"| phash     | {subset:>9,} | brute force {brute_s:.1f} s, multi-index {fast_s:.2f} s: {same} |")
    scaling_rows("phash", sizes, planted_hashes, lambda codes: hamming_pairs(codes, HAMMING), brute_s, subset)


def bench_embedding(sizes: list[int], subset: int) -> None:
    x, _ = embeddings(subset, seed=1)
    exact, brute_s = timed(brute_cosine, x)
    clustered, _ = timed(cosine_pairs, x, COSINE, exact_up_to=0)
    recall = len(pairs_set(clustered) & exact) / max(1, len(exact))
    print(
        f"| embedding | {subset:>9,} | brute force {brute_s:.1f} s; clustered search recall {recall:.4f} "
        f"of {len(exact):,} exact pairs |"
    )
    scaling_rows("embedding", sizes, embeddings, lambda x: cosine_pairs(x, COSINE), brute_s, subset)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated item counts")
    parser.add_argument("--brute", type=int, default=20_000, help="subset size for the brute-force baseline")
    parser.add_argument("--only", choices=["phash", "embedding"], help="run one of the two")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"dedup benchmark on {cpu_count()} cores; pHash threshold {HAMMING} bits, cosine {COSINE}")
    print("| search    |         n | seconds |   pairs | planted rec | brute s (n^2) | speed-up | growth |")
    print("|-----------|----------:|--------:|--------:|------------:|-----------:|---------:|-------:|")
    if args.only != "embedding":
        bench_phash(sizes, args.brute)
    if args.only != "phash":
        bench_embedding(sizes, args.brute)


if __name__ == "__main__":
    main()
