"""`smart_tag`: learn the tags people gave in a `human_tag` task and propose them for the rest.

One logistic regression per tag (scikit-learn, multi-label one-vs-rest) on an embedding property,
trained on the items a person tagged. For every other item each tag is predicted with a probability:
a tag at least `confidence` sure is added, one at most 1 - `confidence` is left out, and the tags in
between are listed in `tags_uncertain`, so a following `human_tag` with `ask_if: tags_uncertain` asks
the person about exactly those items. `smart_tag` records who decided:

    {"by": "human" | "model" | null, "added": [...], "uncertain": [...], "confidence": 0.97}

`by` is null when some tag is uncertain; `confidence` is the least sure of the item's tag calls.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from captionary.core.arrays import items_matrix
from captionary.core.decisions import task_decisions
from captionary.core.hashing import canonical_json
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.errors import ItemError
from captionary.pipeline.step import GlobalRuntime, GlobalStep, Outcome, Runtime, require


@dataclass
class _Learned(GlobalRuntime):
    decisions: dict[str, Any] = field(default_factory=dict)  # item id -> the task's tag list (`prepare`)
    report: dict[str, float] = field(default_factory=dict)  # held-out accuracy of the last `apply_all`


class SmartTag(GlobalStep):
    """Learn a human_tag task's tags from embeddings; add the confident ones to the other items.

    `task` names the review task (its decisions are each item's full tag list). Tags are learned when
    at least `min_per_tag` tagged items have the tag and as many lack it (`tags` restricts the list).
    Confident tags are added to `tags`; uncertain ones go to `tags_uncertain` for the person.
    """

    name: ClassVar[str] = "smart_tag"
    runtime_type: ClassVar[type[Runtime]] = _Learned
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = ("tags", "tags_uncertain", "smart_tag")
    reads_image: ClassVar[bool] = False

    task: str
    embedding: str = "clip_embedding"
    tags: list[str] | None = None
    confidence: float = 0.9
    min_per_tag: int = 5
    regularization: float = 1.0

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.embedding, "tags")

    def validate(self) -> None:
        require_module("sklearn", "smart", package="scikit-learn")
        require(bool(self.task), self, "name the human_tag task to learn from", "task")
        require(0.5 < self.confidence <= 1, self, f"must be in (0.5, 1]; got {self.confidence}", "confidence")
        require(self.min_per_tag >= 2, self, f"must be >= 2; got {self.min_per_tag}", "min_per_tag")
        require(self.regularization > 0, self, "must be > 0", "regularization")

    def prepare(self, ws: Any) -> str:
        """The task's decisions (read here so that a new decision recomputes)."""
        rows = task_decisions(ws.query, self.task)
        self.runtime.decisions = {item: json.loads(value) for item, value in rows}
        return hashlib.blake2b(canonical_json(rows).encode(), digest_size=16).hexdigest()

    def human_tags(self, items: Sequence[Item]) -> dict[str, list[str]]:
        decided = self.runtime.decisions
        labels = {}
        for item in items:
            if item.id not in decided:
                continue
            value = decided[item.id]
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ItemError(
                    f"smart_tag: task {self.task!r} of item {item.id[:12]} is {value!r}, not a tag list"
                )
            labels[item.id] = value
        return labels

    def learnable(self, labels: dict[str, list[str]]) -> list[str]:
        counts: dict[str, int] = {}
        for tags in labels.values():
            for tag in set(tags):
                counts[tag] = counts.get(tag, 0) + 1
        wanted = self.tags if self.tags is not None else sorted(counts)
        return [t for t in wanted if self.min_per_tag <= counts.get(t, 0) <= len(labels) - self.min_per_tag]

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        labels = self.human_tags(items)
        learned = self.learnable(labels)
        if not learned:
            raise ItemError(
                f"smart_tag: no tag of task {self.task!r} has {self.min_per_tag} tagged items with it and "
                f"as many without ({len(labels)} items are tagged)"
            )
        matrix = items_matrix(items, self.embedding)
        decided = np.array([item.id in labels for item in items])
        truth = np.array([[tag in labels.get(item.id, ()) for tag in learned] for item in items])
        p = np.zeros((len(items), len(learned)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            for k in range(len(learned)):
                model = LogisticRegression(C=self.regularization, max_iter=2000, class_weight="balanced")
                model.fit(matrix[decided], truth[decided, k])
                p[:, k] = model.predict_proba(matrix)[:, 1]
        self.runtime.report = self.heldout(matrix[decided], truth[decided])
        return [self.outcome(item, labels.get(item.id), learned, p[row]) for row, item in enumerate(items)]

    def outcome(self, item: Item, human: list[str] | None, learned: list[str], p: Any) -> Outcome:
        if human is not None:
            value = {"by": "human", "added": [], "uncertain": [], "confidence": 1.0}
            return Outcome(props={"tags": list(human), "tags_uncertain": [], "smart_tag": value})
        current = list(item.get("tags") or [])
        added = [t for t, q in zip(learned, p) if q >= self.confidence and t not in current]
        uncertain = [t for t, q in zip(learned, p) if 1 - self.confidence < q < self.confidence]
        sure = float(min(max(q, 1 - q) for q in p))
        value = {
            "by": None if uncertain else "model",
            "added": added,
            "uncertain": uncertain,
            "confidence": round(sure, 4),
        }
        return Outcome(props={"tags": current + added, "tags_uncertain": uncertain, "smart_tag": value})

    def heldout(self, x: Any, truth: Any) -> dict[str, float]:
        """Cross-validated per-tag accuracy on the person's tags: over all calls, over the calls the
        model would make (sure at `confidence`), that share, and items whose every call was right."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import KFold, cross_val_predict

        folds = min(5, len(x))
        if folds < 2:
            return {}
        p = np.zeros(truth.shape)
        split = KFold(folds, shuffle=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fold without one class: that tag's prediction is constant
            for k in range(truth.shape[1]):
                model = LogisticRegression(C=self.regularization, max_iter=2000, class_weight="balanced")
                try:
                    p[:, k] = cross_val_predict(model, x, truth[:, k], cv=split, method="predict_proba")[:, 1]
                except ValueError:
                    p[:, k] = truth[:, k].mean()
        right = (p >= 0.5) == truth
        sure = np.maximum(p, 1 - p) >= self.confidence
        report = {
            "heldout_accuracy": round(float(right.mean()), 4),
            "heldout_exact": round(float(right.all(axis=1).mean()), 4),
            "heldout_coverage": round(float(sure.mean()), 4),
        }
        if sure.any():
            report["heldout_confident_accuracy"] = round(float(right[sure].mean()), 4)
        return report

    def usage(self) -> dict[str, float]:
        return dict(self.runtime.report)
