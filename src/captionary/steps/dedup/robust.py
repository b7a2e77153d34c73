"""`dedup: {method: robust}`: pHash pairs, plus copies that are cropped (up to 10% per side) or mirrored.

Candidates come from the Hamming search: each image's crop and mirror windows (`windows.py`) against
every frame's pHash. A candidate that pHash alone would not pair is kept only if the two images align
pixel for pixel (`verify.py`): different shots of one subject share windows' hashes now and then, never
their pixels. Only candidates are decoded, so the search keeps its scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from captionary.errors import ItemError
from captionary.steps.dedup.fingerprints import hash_array, hash_codes, per_item, perceptual_hash
from captionary.steps.dedup.hamming import cross_pairs, hamming_pairs
from captionary.steps.dedup.pairs import Pairs
from captionary.steps.dedup.windows import WINDOWS, window_hashes

if TYPE_CHECKING:
    import numpy as np

    from captionary.core.item import Item


def robust_pairs(
    items: Sequence[Item], threshold: int, radius: int, threads: int, *, workers: int | None = None
) -> Pairs:
    """Frames within `threshold` bits, and window-to-frame candidates within `radius` bits whose pixels
    align."""
    import numpy as np

    frames = hash_codes(items, per_item(items, "phash", perceptual_hash, threads))
    direct = hamming_pairs(frames, threshold, workers=workers)
    windows = per_item(items, "phash_windows", window_hashes, threads)
    # the frames look up the windows' table: a table of the more numerous hashes is the cheaper search
    found = cross_pairs(frames, hash_array([h for h in _checked(items, windows) for h in h]), radius)
    owner, other = found.right // WINDOWS, found.left
    apart = owner != other
    candidates = Pairs.unique(
        np.minimum(owner, other)[apart], np.maximum(owner, other)[apart], found.distance[apart]
    )
    known = set(zip(direct.left.tolist(), direct.right.tolist()))
    pairs = zip(candidates.left.tolist(), candidates.right.tolist())
    new = [k for k, pair in enumerate(pairs) if pair not in known]
    if not new:
        return direct
    chosen = np.array(new)
    verified = verified_pairs(items, candidates.left[chosen], candidates.right[chosen], threads)
    left, right = candidates.left[chosen][verified], candidates.right[chosen][verified]
    return Pairs.unique(
        np.concatenate([direct.left, left]),
        np.concatenate([direct.right, right]),
        np.concatenate([direct.distance, candidates.distance[chosen][verified]]),
    )


def verified_pairs(items: Sequence[Item], left: np.ndarray, right: np.ndarray, threads: int) -> np.ndarray:
    """A mask over the pairs (`left[k]`, `right[k]`): do the two images show one shot?"""
    import numpy as np

    from captionary.steps.dedup.verify import features, same_shot

    involved = sorted(set(left.tolist()) | set(right.tolist()))

    def describe(i: int) -> tuple[Any, Any]:
        image = items[i].evolve().image  # a copy: the item must not keep its pixels
        return features(image), features(image, mirror=True)

    with ThreadPoolExecutor(max(1, threads)) as pool:  # OpenCV releases the GIL
        described = dict(zip(involved, pool.map(describe, involved)))
        same = pool.map(
            lambda pair: same_shot(described[pair[0]][0], *described[pair[1]]) is not None,
            zip(left.tolist(), right.tolist()),
        )
        return np.fromiter(same, dtype=bool, count=len(left))


def _checked(items: Sequence[Item], windows: Sequence[Any]) -> Sequence[list[str]]:
    for item, value in zip(items, windows):
        if not isinstance(value, list) or len(value) != WINDOWS:
            raise ItemError(
                f"{item.name}: property 'phash_windows' is not a list of {WINDOWS} hashes "
                "(written by the phash_windows step)"
            )
    return windows
