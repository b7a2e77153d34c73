"""Duplicate groups from near-duplicate pairs: the best item (by the keep policy) leads each group.

Items are visited best first; an item not yet in a group starts one and takes every neighbour not yet
in a group. So every dropped item is within the threshold of the item kept in its place (no chains
of small steps that join different images), and the best item of a cluster is the one kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from captionary.steps.dedup.pairs import Pairs


def greedy_groups(n: int, pairs: Pairs, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(leader, distance) per item: the index of the kept item of its group (itself for the kept one,
    -1 outside any group) and its distance to it. `rank`: lower is kept first."""
    import numpy as np

    leader = np.full(n, -1, dtype=np.int64)
    distance = np.zeros(n, dtype=np.float64)
    if len(pairs) == 0:
        return leader, distance
    source = np.concatenate([pairs.left, pairs.right])
    target = np.concatenate([pairs.right, pairs.left])
    weight = np.concatenate([pairs.distance, pairs.distance]).astype(np.float64)
    order = np.lexsort((weight, rank[target], source))  # neighbours: best first, then closest
    source, target, weight = source[order], target[order], weight[order]
    nodes = np.unique(source)
    bounds = np.searchsorted(source, np.append(nodes, n))
    start = dict(zip(nodes.tolist(), zip(bounds[:-1].tolist(), bounds[1:].tolist())))
    targets, weights = target.tolist(), weight.tolist()
    for u in nodes[np.argsort(rank[nodes], kind="stable")].tolist():
        if leader[u] != -1:
            continue
        first, last = start[u]
        taken = [(targets[k], weights[k]) for k in range(first, last) if leader[targets[k]] == -1]
        if taken:  # a group of one (all its neighbours taken already) is no group
            leader[u] = u
            for v, d in taken:
                leader[v], distance[v] = u, d
    return leader, distance


def ranks(values: np.ndarray) -> np.ndarray:
    """Rank 0 for the largest value; ties (and NaN, last) by position."""
    import numpy as np

    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf)
    order = np.lexsort((np.arange(len(values)), -values))
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    return rank
