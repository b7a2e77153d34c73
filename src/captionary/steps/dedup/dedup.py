"""`dedup` and `exact_dedup`: find duplicate groups, keep one item per group by a policy, record the
group on every member and drop the others with a reason naming the kept item.

    dedup: {method: exact}                      # same pixels (any file format or metadata)
    dedup: {method: phash, threshold: 8}        # perceptual hash, Hamming distance in bits (of 64)
    dedup: {method: robust, threshold: 8}       # also crops up to 10% per side and mirrored copies
    dedup: {method: embedding, threshold: 0.95} # cosine similarity of `clip_embed` embeddings

`keep`: `largest` (most pixels), `sharpest` (`sharpness`), `highest` (the property named by
`score`) or `first` (first in the stable order: source path, then id). Ties go to the first.
Members get `dup_group` (the kept item's id); dropped ones also `dup_of` and `dup_distance`.
With `drop: false` the groups are only recorded. `workers`: threads or processes for the search and
for values no earlier step stored (default: all cores; not part of the cache key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.errors import ItemError
from captionary.pipeline.step import GlobalStep, Outcome, require
from captionary.steps.dedup.fingerprints import hash_codes, per_item, perceptual_hash, pixel_digest
from captionary.steps.dedup.groups import greedy_groups, ranks
from captionary.steps.dedup.pairs import Pairs

if TYPE_CHECKING:
    import numpy as np

METHODS = ("exact", "phash", "robust", "embedding")
KEEP = ("largest", "sharpest", "highest", "first")
DEFAULT_THRESHOLD = {"phash": 8, "robust": 8, "embedding": 0.95}
"""phash 8: on the 158 DreamBooth photos the closest two different photos differ by 12 bits, while
98% of 2%-cropped and of JPEG q50 copies stay within 8. embedding 0.95: CLIP near duplicates."""
WINDOW_RADIUS = 6
"""robust: a crop or mirror window within this many bits of another image's frame is a candidate
(`windows.py` says how close copies come), kept only if the two align pixel for pixel (`verify.py`).
A small radius keeps the search cheap: 1M images' 27M windows are searched in about a minute."""
WRITES = ("dup_group", "dup_of", "dup_distance")


class _Deduplicate(GlobalStep):
    """What both dedup steps share: the keep policy, groups from pairs, outcomes."""

    writes: ClassVar[tuple[str, ...]] = WRITES
    cache_exclude: ClassVar[tuple[str, ...]] = ("workers",)

    if TYPE_CHECKING:  # the keep policy's parameters: each step declares them, after its own
        keep: str
        score: str | None
        drop: bool
        workers: int | None

    def validate(self) -> None:
        require(self.keep in KEEP, self, f"must be one of {', '.join(KEEP)}; got {self.keep!r}", param="keep")
        require(
            (self.keep == "highest") == (self.score is not None),
            self,
            "keep: highest needs `score` (the property to compare), and only it takes one",
            param="score",
        )

    @property
    def reads(self) -> tuple[str, ...]:
        return (
            self.compared
            + {
                "largest": ("width", "height"),
                "sharpest": ("sharpness",),
                "highest": (self.score or "",),
                "first": (),
            }[self.keep]
        )

    @property
    def compared(self) -> tuple[str, ...]:
        """Properties the duplicate search reads."""
        return ()

    def find_pairs(self, items: Sequence[Item], rank: np.ndarray) -> Pairs:
        """Near-duplicate pairs (`rank`: the keep priority, for groups of equal items)."""
        raise NotImplementedError

    def explain(self, distance: float) -> str:
        return "same pixels"

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        if len(items) < 2:
            return [Outcome() for _ in items]
        rank = self.rank(items)
        leader, distance = greedy_groups(len(items), self.find_pairs(items, rank), rank)
        return [self.outcome(items, i, int(leader[i]), float(distance[i])) for i in range(len(items))]

    def outcome(self, items: Sequence[Item], i: int, lead: int, distance: float) -> Outcome:
        if lead < 0:
            return Outcome()
        kept = items[lead]
        if lead == i:
            return Outcome(props={"dup_group": kept.id})
        value: int | float = int(distance) if distance.is_integer() else round(distance, 5)
        props = {"dup_group": kept.id, "dup_of": kept.id, "dup_distance": value}
        if not self.drop:
            return Outcome(props=props)
        reason = f"duplicate of {kept.name} ({self.explain(distance)}; kept the {self.keep_words})"
        return Outcome(props=props, dropped=reason)

    @property
    def keep_words(self) -> str:
        return {"highest": f"highest {self.score}", "first": "first"}.get(self.keep, self.keep)

    def rank(self, items: Sequence[Item]) -> np.ndarray:
        """Keep priority per item (0 is kept first)."""
        import numpy as np

        if self.keep == "first":
            return np.arange(len(items))
        if self.keep == "largest":
            return ranks(np.array([item.get("width", 0) * item.get("height", 0) for item in items]))
        if self.keep == "sharpest":
            from captionary.steps.scores.sharpness import sharpness_score

            return ranks(np.array(per_item(items, "sharpness", sharpness_score, self.threads)))
        values = []
        for item in items:
            value = item.get(self.score or "")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ItemError(
                    f"{item.name}: keep: highest needs a number in {self.score!r}, got {value!r} "
                    "(run the step that computes it first)"
                )
            values.append(value)
        return ranks(np.array(values, dtype=np.float64))

    @property
    def threads(self) -> int:
        from captionary.steps.dedup.hamming import cpu_count

        return self.workers or cpu_count()


class ExactDedup(_Deduplicate):
    """Drop images whose pixels equal another's (byte-identical files are dropped when loaded)."""

    name: ClassVar[str] = "exact_dedup"

    keep: str = "largest"
    score: str | None = None
    drop: bool = True
    workers: int | None = None

    def find_pairs(self, items: Sequence[Item], rank: np.ndarray) -> Pairs:
        return exact_pairs(per_item(items, None, pixel_digest, self.threads), rank)


class Dedup(_Deduplicate):
    """Find duplicates by pixels (`exact`), perceptual hash (`phash`) or embedding; keep one of each group."""

    name: ClassVar[str] = "dedup"

    method: str = "phash"
    threshold: float | None = None
    embedding: str = "clip_embedding"
    keep: str = "largest"
    score: str | None = None
    drop: bool = True
    workers: int | None = None

    def validate(self) -> None:
        require(self.method in METHODS, self, f"must be one of {', '.join(METHODS)}", param="method")
        super().validate()
        t = self.threshold
        if self.method == "exact":
            require(t is None, self, "method: exact takes no threshold", param="threshold")
        elif self.method in ("phash", "robust"):
            require_module("imagehash", "dedup")
            if self.method == "robust":
                require_module("cv2", "dedup", package="opencv-python-headless")
            require(
                t is None or (0 <= t <= 32 and float(t).is_integer()),
                self,
                f"for phash: a whole number of bits 0..32 (of 64); got {t}",
                param="threshold",
            )
        else:
            require_module("faiss", "dedup", package="faiss-cpu")
            require(
                t is None or 0 < t <= 1,
                self,
                f"for embedding: a cosine similarity in (0, 1]; got {t}",
                param="threshold",
            )

    @property
    def limit(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLD.get(self.method, 0)

    @property
    def compared(self) -> tuple[str, ...]:
        return {
            "exact": (),
            "phash": ("phash",),
            "robust": ("phash", "phash_windows"),
            "embedding": (self.embedding,),
        }[self.method]

    def find_pairs(self, items: Sequence[Item], rank: np.ndarray) -> Pairs:
        if self.method == "exact":
            return exact_pairs(per_item(items, None, pixel_digest, self.threads), rank)
        if self.method == "phash":
            from captionary.steps.dedup.hamming import hamming_pairs

            hashes = per_item(items, "phash", perceptual_hash, self.threads)
            return hamming_pairs(hash_codes(items, hashes), int(self.limit), workers=self.workers)
        if self.method == "robust":
            from captionary.steps.dedup.robust import robust_pairs

            return robust_pairs(items, int(self.limit), WINDOW_RADIUS, self.threads, workers=self.workers)
        from captionary.steps.dedup.semantic import cosine_pairs

        return cosine_pairs(self.embeddings(items), self.limit)

    def embeddings(self, items: Sequence[Item]) -> np.ndarray:
        from captionary.core.arrays import is_array_ref, load_matrix

        for item in items:
            ref = item.get(self.embedding)
            if not is_array_ref(ref):
                what = "no property" if ref is None else "not an array in property"
                raise ItemError(
                    f"{item.name}: {what} {self.embedding!r} (run clip_embed, or the step that stores "
                    "embeddings, before dedup)"
                )
        store = items[0].store if items else None
        if store is None:
            raise ItemError("items are not attached to a workspace; cannot read their embeddings")
        return load_matrix(store, (item[self.embedding] for item in items))

    def explain(self, distance: float) -> str:
        if self.method == "phash":
            return f"pHash distance {int(distance)} <= {int(self.limit)}"
        if self.method == "robust":
            return (
                f"pHash distance {int(distance)} between the frames <= {int(self.limit)}, or between a crop "
                f"or mirror window and a frame <= {WINDOW_RADIUS} with the pixels aligned"
            )
        if self.method == "embedding":
            return f"cosine similarity {1 - distance:.3f} >= {self.limit:g}"
        return "same pixels"


def exact_pairs(keys: Sequence[Any], rank: np.ndarray) -> Pairs:
    """Pairs joining the best-ranked item of each set of equal keys to the others (distance 0)."""
    import numpy as np

    best: dict[Any, int] = {}
    for i in np.argsort(rank, kind="stable").tolist():
        best.setdefault(keys[i], i)
    pairs = [(best[key], i) for i, key in enumerate(keys) if best[key] != i]
    if not pairs:
        return Pairs.empty()
    lead, other = np.array(pairs, dtype=np.int64).T
    return Pairs(np.minimum(lead, other), np.maximum(lead, other), np.zeros(len(pairs)))
