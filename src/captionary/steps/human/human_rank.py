"""human_rank: a person ranks the items by answering "which of these two is better?".

Unlike the other human steps it needs every item (pairs are drawn from the whole set), so it behaves
like a global step with a person in the loop: items wait until the ranking is done, then go on with
`rank_score` (Bradley-Terry, logit scale: a gap of 1 means the higher one wins 73% of the time),
`rank_sigma` (its uncertainty) and `rank_by` (`human`: compared at least once; `model`: scored by the
learned ranker only). The ranking is done when `budget` answers are stored or the expected Kendall tau
of the ranking (from the fit's uncertainty) reaches `target`. Answers live in `comparisons`, keyed by
task and the two original item ids: a re-run whose budget is spent ranks from them without asking.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from captionary.core import ranking
from captionary.core.item import Item
from captionary.pipeline.step import Outcome, require
from captionary.steps.human.base import HumanStep

if TYPE_CHECKING:
    import numpy as np

PER_ITEM = 5
"""The default budget: this many comparisons per item."""


class HumanRank(HumanStep):
    """Rank images by pairwise choice in the review app (a/← left better, d/→ right better, s can't tell).

    Pairs are chosen actively (most informative first, `explore` share at random), never asked twice.
    Writes `rank_score`, `rank_sigma`, `rank_by`. Done after `budget` answers (default 5 per item) or
    when the ranking's expected Kendall tau reaches `target`. With `embedding` (e.g. `clip_embedding`
    from `clip_embed`) a linear ranker learned from the answers scores every item, shown or not, and
    the pairs it is unsure about are asked first.
    """

    name: ClassVar[str] = "human_rank"
    task_kind: ClassVar[str] = "rank"
    collects_all: ClassVar[bool] = True
    writes: ClassVar[tuple[str, ...]] = ("rank_score", "rank_sigma", "rank_by")

    budget: int | None = None
    target: float | None = 0.9
    embedding: str = ""
    explore: float = 0.1
    task: str = ""

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.embedding,) if self.embedding else ()

    def validate(self) -> None:
        super().validate()
        require(self.budget is None or self.budget >= 1, self, f"must be >= 1; got {self.budget}", "budget")
        require(
            self.target is None or 0 < self.target < 1,
            self,
            f"must be in (0, 1); got {self.target}",
            "target",
        )
        require(0 <= self.explore <= 1, self, f"must be in [0, 1]; got {self.explore}", "explore")

    def task_config(self) -> dict[str, Any]:
        return {"budget": self.budget, "target": self.target, "embedding": self.embedding}

    def budget_for(self, count: int) -> int:
        return self.budget if self.budget is not None else PER_ITEM * count

    def session(
        self, ids: Sequence[str], answers: Sequence[tuple[str, str, str | None]], x: np.ndarray | None = None
    ) -> RankSession:
        """The ranking of the items `ids` from the stored `answers` (those about other items are
        ignored), with their embeddings `x` when the step learns a ranker."""
        return RankSession(self, list(ids), answers, x)

    def check(self, value: Any) -> Any:
        raise ValueError("human_rank takes pairwise answers (/api/rank), not per-item decisions")

    def outcome(self, item: Item, value: Any) -> Outcome:
        return Outcome(props=value)


@dataclass
class Progress:
    comparisons: int
    budget: int
    expected_tau: float
    target: float | None
    done: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "comparisons": self.comparisons,
            "budget": self.budget,
            "expected_tau": round(self.expected_tau, 4),
            "target": self.target,
            "done": self.done,
            "reason": self.reason,
        }


class RankSession:
    """One fit of a ranking task: its progress, the next pairs to ask and every item's score."""

    def __init__(
        self,
        step: HumanRank,
        ids: list[str],
        answers: Sequence[tuple[str, str, str | None]],
        x: np.ndarray | None,
    ):
        self.step = step
        self.ids = ids
        index = {item: k for k, item in enumerate(ids)}
        triples = []
        for a, b, winner in answers:
            if a in index and b in index:
                outcome = ranking.TIE if winner is None else 1.0 if winner == a else 0.0
                triples.append((index[a], index[b], outcome))
        self.answered = {ranking.pair_key(i, j) for i, j, _ in triples}
        pairs, outcomes = ranking.as_arrays(len(ids), triples)
        if x is not None and len(ids):
            self.fit, _ = ranking.fit_with_embeddings(x, pairs, outcomes)
        else:
            self.fit = ranking.fit(len(ids), pairs, outcomes)
        self.learned = x is not None
        self.comparisons = len(triples)

    def progress(self) -> Progress:
        n = len(self.ids)
        budget = self.step.budget_for(n)
        tau = ranking.expected_tau(self.fit)
        target = self.step.target
        if n < 2 or len(self.answered) >= n * (n - 1) // 2:
            reason = "every pair is answered"
        elif self.comparisons >= budget:
            reason = f"the budget of {budget} comparisons is spent"
        elif target is not None and tau >= target:
            reason = f"the expected Kendall tau {tau:.3f} reached the target {target}"
        else:
            reason = ""
        return Progress(self.comparisons, budget, tau, target, bool(reason), reason)

    def next_pairs(
        self,
        count: int,
        pending: Collection[tuple[str, str]] = (),
        avoid: Sequence[str] = (),
        seed: Any = None,
    ) -> list[tuple[str, str]]:
        """Up to `count` pairs to ask (left, right: shown in a random order), none answered or
        `pending` (sent, not yet stored: the ids in either order), preferably without items in `avoid`."""
        import numpy as np

        rng = np.random.default_rng(seed)
        index = {item: k for k, item in enumerate(self.ids)}
        taken = set(self.answered)
        for a, b in pending:
            if a in index and b in index:
                taken.add(ranking.pair_key(index[a], index[b]))
        shown = [index[item] for item in avoid if item in index]
        chosen = ranking.choose_pairs(self.fit, taken, count, self.step.explore, rng, avoid=shown)
        while len(chosen) < count:  # few items: use an item twice rather than run dry
            taken.update(chosen)
            more = ranking.choose_pairs(self.fit, taken, count - len(chosen), self.step.explore, rng)
            if not more:
                break
            chosen += more
        pairs = []
        for i, j in chosen:
            left, right = (i, j) if rng.random() < 0.5 else (j, i)
            pairs.append((self.ids[left], self.ids[right]))
        return pairs

    def scores(self) -> dict[str, dict[str, Any]]:
        """item id -> its `rank_score`, `rank_sigma` and `rank_by`."""
        result = {}
        for k, item in enumerate(self.ids):
            by = "human" if self.fit.counts[k] else "model" if self.learned else None
            result[item] = {
                "rank_score": round(float(self.fit.scores[k]), 6),
                "rank_sigma": round(float(self.fit.sigmas[k]), 6),
                "rank_by": by,
            }
        return result
