"""`main_subject`: keep the items that show the dataset's dominant subject (one person, one character,
one object), by an embedding; drop the rest (waifuc's CCIPAction, for any subject and embedding).

How the subject is found (cosine distances of unit-length embeddings):

1. the *core*: the `m = ceil(min_share * n)` items nearest the *medoid*, the item whose m nearest
   neighbours are nearest (the densest spot of the set); the subject's centre is their mean;
2. the core must be one group: the medoid's m-th nearest neighbour at most twice as far as its
   (m/2)-th. When no subject holds `min_share` of the items, the core reaches into a second one and
   that distance jumps: then there is no dominant subject and nothing is dropped;
3. an item belongs to the subject when its distance to the centre is at most `max_distance`, by
   default twice the core's radius (the distance of its farthest member), which adapts to the
   embedding: same-subject photos lie in a tight group, others well outside it;
4. items outside are dropped with their distance in the reason; every item gets `subject_distance`.

Fewer than `min_items` items (default 8): nothing is decided or dropped. It is a global step: it
waits for every item; the progress line says how many it has, then what it decided. Cost: n x n
distances (10,000 items: 400 MB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from captionary.core.arrays import items_matrix
from captionary.core.item import Item
from captionary.pipeline.step import GlobalStep, Outcome, require

MIN_ITEMS = 8
"""Below this many items a dominant subject is not a meaningful notion: nothing is dropped."""


class MainSubject(GlobalStep):
    """Keep the items that show the dominant subject, by an embedding; drop the rest.

    `embedding` (e.g. `clip_embedding`); items farther than `max_distance` (default: twice the radius
    of its densest `min_share` of items) from its centre are dropped; writes `subject_distance`.
    Waits for every item; needs at least `min_items`."""

    name: ClassVar[str] = "main_subject"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("subject_distance",)
    reads_image: ClassVar[bool] = False

    embedding: str = "clip_embedding"
    min_share: float = 0.6
    max_distance: float | None = None
    min_items: int = MIN_ITEMS
    drop: bool = True

    @property
    def reads(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.embedding,)

    def validate(self) -> None:
        require(0 < self.min_share <= 1, self, f"must be in (0, 1]; got {self.min_share}", param="min_share")
        require(
            self.max_distance is None or 0 < self.max_distance <= 2,
            self,
            f"must be a cosine distance in (0, 2]; got {self.max_distance}",
            param="max_distance",
        )
        require(self.min_items >= 2, self, f"must be >= 2; got {self.min_items}", param="min_items")

    def waiting(self, count: int) -> str:
        if count < self.min_items:
            return f"{count} items so far; decides once all have arrived (needs at least {self.min_items})"
        return f"{count} items so far; decides once all have arrived"

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        if len(items) < self.min_items:
            self.report(f"only {len(items)} items (< min_items {self.min_items}): nothing dropped")
            return [Outcome() for _ in items]
        found = subject_distances(items_matrix(items, self.embedding), self.min_share, self.max_distance)
        distances, threshold, core = found.distances, found.threshold, found.core
        if not found.dominant:
            self.report(f"no dominant subject (its densest {core} items are not one group): nothing dropped")
        outcomes = []
        for distance in distances:
            props: dict[str, Any] = {"subject_distance": round(float(distance), 4)}
            if self.drop and found.dominant and distance > threshold:
                reason = f"not the main subject: distance {distance:.3f} from its centre > {threshold:.3f}"
                outcomes.append(Outcome(props=props, dropped=reason))
            else:
                outcomes.append(Outcome(props=props))
        if found.dominant:
            kept = sum(1 for d in distances if d <= threshold)
            self.report(f"main subject: {kept} of {len(items)} items within {threshold:.3f} (core of {core})")
        return outcomes

    def report(self, text: str) -> None:
        self.runtime.note = text  # shown on the progress line by the global stage


@dataclass(frozen=True)
class Subject:
    distances: Any  # each row's cosine distance to the subject's centre
    threshold: float  # rows farther are not the subject
    core: int  # how many rows the core holds
    dominant: bool  # the core is one group (else there is no dominant subject)


def subject_distances(matrix: Any, min_share: float, max_distance: float | None) -> Subject:
    """Where the dominant subject of `matrix`'s rows is (see the module docstring)."""
    import numpy as np

    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    n = len(unit)
    size = min(n, max(1, math.ceil(min_share * n)))
    pairwise = 1.0 - unit @ unit.T
    reach = np.sort(pairwise, axis=1)[:, size - 1]  # distance to the size-th nearest (itself first)
    medoid = int(np.argmin(reach))
    nearest = np.sort(pairwise[medoid])
    half = max(2, math.ceil(size / 2))
    dominant = size < 4 or nearest[size - 1] <= 2 * nearest[half - 1]
    core = np.argsort(pairwise[medoid], kind="stable")[:size]
    centre = unit[core].mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    distances = np.clip(1.0 - unit @ centre, 0.0, 2.0)
    threshold = max_distance if max_distance is not None else 2.0 * float(distances[core].max())
    return Subject(distances, threshold, size, bool(dominant))
