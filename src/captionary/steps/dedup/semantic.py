"""Near-duplicate search over embeddings by cosine similarity: clustered, never all pairs.

Up to `EXACT_UP_TO` vectors are compared exactly (blocks of one matrix product). Beyond that the
vectors are projected on their leading principal axes (PCA), clustered with k-means (faiss) on the
first `CLUSTER_DIM` of them, each listed under its nearest centroid, and each vector is compared only
with the vectors listed under its `nprobe` nearest centroids (as in an inverted-file index, or
SemDeDup's per-cluster comparison). Near duplicates sit in the same or a neighbouring cluster, so few
pairs are missed (the benchmark measures how many) and the work grows about as n^1.5, not n^2.
Within a cluster, candidates are picked by distance in the `PCA_DIM` projection (exact: a projection
never lengthens a distance, so no pair close enough is lost) and only those are compared at full
dimension. Similarities are matrix products (BLAS), several times faster here than scanning an
index vector by vector.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from captionary.steps.dedup.pairs import Pairs

if TYPE_CHECKING:
    import numpy as np

EXACT_UP_TO = 20_000
PCA_DIM = 128  # dimensions for picking candidates; similarities use every dimension
CLUSTER_DIM = 32  # the leading ones, for clustering (fewer: more even clusters, cheaper k-means)
TRAIN_PER_CLUSTER = 10  # k-means only partitions the space: a rough fit is enough
LISTS_PER_ROOT = 2  # clusters = 2 sqrt(n): fewer, larger matrix products; k-means cost ~ clusters^2
BLOCK = 4096  # rows per matrix product in the exact search


def cosine_pairs(
    vectors: np.ndarray, threshold: float, *, nprobe: int = 3, exact_up_to: int = EXACT_UP_TO, seed: int = 0
) -> Pairs:
    """Every pair (i < j) of rows with cosine similarity >= `threshold` (distance = 1 - cosine);
    exact up to `exact_up_to` rows, clustered (nearly all pairs) beyond."""
    import numpy as np

    n = len(vectors)
    if n < 2:
        return Pairs.empty()
    x = _unit_rows(vectors)
    if n <= exact_up_to:
        found = [_block_pairs(x, np.arange(n), np.arange(n), threshold)]
    else:
        found = _clustered(x, threshold, nprobe, seed)
    left = np.concatenate([f[0] for f in found])
    right = np.concatenate([f[1] for f in found])
    sim = np.concatenate([f[2] for f in found])
    return Pairs.unique(left, right, np.clip(1.0 - sim.astype(np.float64), 0.0, 2.0))


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    import numpy as np

    x = np.array(vectors, dtype=np.float32, order="C")
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d matrix (n, dim); got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if len(zero):
        raise ValueError(f"embedding {int(zero[0])} is all zeros (no direction to compare)")
    x /= norms
    return x


def _block_pairs(
    x: np.ndarray, queries: np.ndarray, members: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (query, member), oriented low < high, with similarity >= threshold."""
    import numpy as np

    lefts, rights, sims = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    target = x[members].T
    for start in range(0, len(queries), BLOCK):
        rows = queries[start : start + BLOCK]
        sim = x[rows] @ target
        q, m = np.nonzero(sim >= threshold)
        a, b = rows[q], members[m]
        distinct = a != b
        lefts.append(np.minimum(a, b)[distinct])
        rights.append(np.maximum(a, b)[distinct])
        sims.append(sim[q, m][distinct])
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(sims)


def _clustered(x: np.ndarray, threshold: float, nprobe: int, seed: int) -> list[tuple]:
    import faiss
    import numpy as np

    n, dim = x.shape
    nlist = max(2, min(int(LISTS_PER_ROOT * math.sqrt(n)), n // TRAIN_PER_CLUSTER))
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, min(n, TRAIN_PER_CLUSTER * nlist), replace=False)
    reduced_dim = min(PCA_DIM, dim)
    centred = x[sample[:20_000]]
    mean = centred.mean(axis=0)
    centred -= mean
    _, vectors = np.linalg.eigh(centred.T @ centred)  # principal axes, ascending variance
    projection = np.ascontiguousarray(vectors[:, ::-1][:, :reduced_dim])
    reduced = np.ascontiguousarray(x @ projection - mean @ projection, dtype=np.float32)
    coarse = np.ascontiguousarray(reduced[:, :CLUSTER_DIM])
    kmeans = faiss.Kmeans(
        coarse.shape[1], nlist, niter=8, seed=seed, max_points_per_centroid=10**9, min_points_per_centroid=1
    )
    kmeans.train(coarse[sample])
    _, nearest = kmeans.index.search(coarse, min(nprobe, nlist))
    del coarse
    home = nearest[:, 0]  # each vector is listed under its nearest centroid
    members_of = _groups(home, nlist)
    probes = nearest.ravel()
    queries_of = _groups(probes, nlist, owners=np.repeat(np.arange(n), nearest.shape[1]))
    squares = np.einsum("ij,ij->i", reduced, reduced)
    return [
        _cluster_pairs(x, reduced, squares, queries_of[c], members_of[c], threshold)
        for c in range(nlist)
        if len(members_of[c]) and len(queries_of[c])
    ]


def _cluster_pairs(
    x: np.ndarray,
    reduced: np.ndarray,
    squares: np.ndarray,
    queries: np.ndarray,
    members: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (query, member), low < high, with similarity >= threshold. Unit vectors with cosine >= t
    are within sqrt(2 - 2t) of each other, and an orthogonal projection never lengthens a distance,
    so candidates are first picked in the projection (4x cheaper) without losing any pair."""
    import numpy as np

    distance2 = reduced[queries] @ reduced[members].T  # in place: these matrices are the big ones
    distance2 *= -2.0
    distance2 += squares[queries][:, None]
    distance2 += squares[members][None, :]
    near = distance2 <= 2.0 - 2.0 * threshold + 1e-4
    if np.count_nonzero(near) * 8 > near.size:  # many candidates: one full product costs less
        full = x[queries] @ x[members].T
        q, m = np.nonzero(full >= threshold)
        a, b, sim = queries[q], members[m], full[q, m]
    else:
        q, m = np.nonzero(near)
        a, b = queries[q], members[m]
        sim = np.einsum("ij,ij->i", x[a], x[b])
    close = (sim >= threshold) & (a != b)
    return np.minimum(a, b)[close], np.maximum(a, b)[close], sim[close]


def _groups(labels: np.ndarray, k: int, owners: np.ndarray | None = None) -> list[np.ndarray]:
    """For each label 0..k-1, the owners (default: positions) that carry it."""
    import numpy as np

    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    owned = order if owners is None else owners[order]
    return [owned[bounds[c] : bounds[c + 1]] for c in range(k)]
