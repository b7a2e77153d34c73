"""The duplicate searches against brute force: multi-index Hamming search, clustered cosine search,
and the grouping that decides which item is kept."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("faiss")

from captionary.steps.dedup import hamming
from captionary.steps.dedup.groups import greedy_groups, ranks
from captionary.steps.dedup.hamming import band_plan, hamming_pairs
from captionary.steps.dedup.pairs import Pairs
from captionary.steps.dedup.semantic import cosine_pairs


def planted_hashes(n: int, seed: int = 0) -> np.ndarray:
    """Random 64-bit hashes with copies at 0..14 flipped bits (near duplicates at every distance)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**63, size=n, dtype=np.int64).view(np.uint64) * np.uint64(2)
    codes |= rng.integers(0, 2, size=n).astype(np.uint64)
    for k in range(0, n // 2, 2):
        flips = rng.choice(64, size=k % 15, replace=False)
        codes[k + 1] = codes[k] ^ np.uint64(sum(1 << int(b) for b in flips))
    return codes


def brute_hamming(codes: np.ndarray, threshold: int) -> set[tuple[int, int]]:
    found = set()
    for i in range(len(codes) - 1):
        distance = np.bitwise_count(codes[i] ^ codes[i + 1 :])
        found.update((i, i + 1 + int(j)) for j in np.flatnonzero(distance <= threshold))
    return found


def as_set(pairs: Pairs) -> set[tuple[int, int]]:
    return set(zip(pairs.left.tolist(), pairs.right.tolist()))


@pytest.mark.parametrize("path", ["multi-index", "all pairs"])
@pytest.mark.parametrize("threshold", [0, 1, 4, 8, 12])
def test_hamming_search_equals_brute_force(threshold, path, monkeypatch):
    monkeypatch.setattr(hamming, "PAIR_COST", 0.0 if path == "multi-index" else float("inf"))
    codes = planted_hashes(3000)
    pairs = hamming_pairs(codes, threshold)
    expected = brute_hamming(codes, threshold)
    assert as_set(pairs) == expected and len(expected) > 0
    assert (pairs.left < pairs.right).all()
    truth = np.bitwise_count(codes[pairs.left] ^ codes[pairs.right])
    assert (pairs.distance == truth).all()


def test_hamming_search_in_worker_processes_equals_in_process(monkeypatch):
    monkeypatch.setattr(hamming, "PAIR_COST", 0.0)  # the multi-index search, even for few hashes
    codes = planted_hashes(4000, seed=1)
    expected = as_set(hamming_pairs(codes, 8, workers=1))
    monkeypatch.setattr(hamming, "POOL_FROM", 0)
    assert as_set(hamming_pairs(codes, 8, workers=2)) == expected == brute_hamming(codes, 8)


def test_band_plan_guarantees_every_pair_within_the_threshold():
    for n in (100, 10_000, 1_000_000):
        for threshold in range(0, 33):
            bands = band_plan(n, threshold)
            assert sum(radius + 1 for _, _, radius in bands) > threshold
            assert all(start + width <= 64 for start, width, _ in bands)
            starts = [start for start, _, _ in bands]
            assert starts == sorted(set(starts))  # disjoint


def clustered_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Clustered random vectors (like image embeddings) with planted near copies."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    x = centres[rng.integers(0, 50, n)] + rng.standard_normal((n, dim)).astype(np.float32)
    for k in range(0, n // 10, 2):
        x[k + 1] = x[k] + 0.15 * rng.standard_normal(dim).astype(np.float32)
    return x


def brute_cosine(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    i, j = np.nonzero(np.triu(sim >= threshold, k=1))
    return set(zip(i.tolist(), j.tolist()))


def test_exact_cosine_search_equals_brute_force():
    x = clustered_vectors(3000, 32)
    pairs = cosine_pairs(x, 0.95)
    expected = brute_cosine(x, 0.95)
    assert as_set(pairs) == expected and len(expected) >= 100
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = np.einsum("ij,ij->i", unit[pairs.left], unit[pairs.right])
    assert np.allclose(pairs.distance, 1 - sims, atol=1e-5)


def test_clustered_cosine_search_finds_nearly_every_pair_without_comparing_all():
    x = clustered_vectors(12_000, 32, seed=2)
    expected = brute_cosine(x, 0.95)
    found = as_set(cosine_pairs(x, 0.95, exact_up_to=1000))  # forces the clustered search
    recall = len(found & expected) / len(expected)
    print(f"\nclustered cosine search, 12,000 x 32: recall {recall:.4f} of {len(expected)} pairs")
    assert found <= expected  # never a false pair: similarities are exact
    assert recall >= 0.98


def test_cosine_search_refuses_zero_vectors():
    x = np.ones((3, 4), dtype=np.float32)
    x[1] = 0
    with pytest.raises(ValueError, match="embedding 1 is all zeros"):
        cosine_pairs(x, 0.9)


def pairs_of(*edges: tuple[int, int, float]) -> Pairs:
    left, right, distance = zip(*edges)
    return Pairs(np.array(left), np.array(right), np.array(distance, dtype=float))


def test_groups_keep_the_best_item_and_never_chain():
    # 0-1 and 1-2 are close, 0-2 is not: the best (0) keeps 1; 2 is not a duplicate of 0
    leader, distance = greedy_groups(4, pairs_of((0, 1, 3), (1, 2, 3)), ranks(np.array([9, 5, 1, 0])))
    assert leader.tolist() == [0, 0, -1, -1] and distance.tolist() == [0, 3, 0, 0]
    # with 1 best, it keeps both neighbours
    leader, _ = greedy_groups(4, pairs_of((0, 1, 3), (1, 2, 3)), ranks(np.array([1, 9, 1, 0])))
    assert leader.tolist() == [1, 1, 1, -1]


def test_ranks_prefer_high_values_then_position():
    assert ranks(np.array([1.0, 3.0, 3.0, float("nan")])).tolist() == [2, 0, 1, 3]
