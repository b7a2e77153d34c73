"""`smart_filter`: learn a person's keep/reject choices from embeddings and predict the rest.

A logistic regression (scikit-learn) is trained on the embeddings of items a person already decided
(decisions of a review task, or a property), then predicts every undecided item with a confidence.
Only predictions at or above `confidence` are applied; the uncertain middle stays undecided for the
person. Every item's `smart_filter` property records who decided:

    {"decision": "keep" | "reject" | null, "by": "human" | "model" | null, "p_keep": 0.97}
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

LABELS = {"keep": True, "reject": False, True: True, False: False}


@dataclass
class _Decided(GlobalRuntime):
    decisions: dict[str, Any] = field(default_factory=dict)  # item id -> the task's decision (`prepare`)
    report: dict[str, float] = field(default_factory=dict)  # held-out accuracy of the last `apply_all`


class SmartFilter(GlobalStep):
    """Predict keep/reject for undecided items from the ones a person decided; apply confident ones.

    Labels come from the review task `task` (its human_filter decisions) or from the property `label`
    (`keep`/`reject` or true/false). `embedding` names the array property to learn from. The inverse
    regularisation strength `regularization` (C) is chosen by cross-validated log loss unless given,
    so that probabilities stay honest with few labels. Items a person or the model rejected are
    dropped unless `drop` is false.
    """

    name: ClassVar[str] = "smart_filter"
    runtime_type: ClassVar[type[Runtime]] = _Decided
    version: ClassVar[int] = 2  # 2: held-out accuracy in the run summary
    writes: ClassVar[tuple[str, ...]] = ("smart_filter",)
    reads_image: ClassVar[bool] = False

    task: str = ""
    label: str = ""
    embedding: str = "clip_embedding"
    confidence: float = 0.9
    min_per_class: int = 5
    regularization: float | None = None
    drop: bool = True

    @property
    def reads(self) -> tuple[str, ...]:
        return (self.embedding, self.label) if self.label else (self.embedding,)

    def validate(self) -> None:
        require_module("sklearn", "smart", package="scikit-learn")
        require(bool(self.task) != bool(self.label), self, "give either `task` or `label` (one of them)")
        require(0.5 < self.confidence <= 1, self, f"must be in (0.5, 1]; got {self.confidence}", "confidence")
        require(self.min_per_class >= 1, self, f"must be >= 1; got {self.min_per_class}", "min_per_class")
        require(self.regularization is None or self.regularization > 0, self, "must be > 0", "regularization")

    def prepare(self, ws: Any) -> str:
        """The task's decisions (read here so that a new decision recomputes)."""
        if not self.task:
            return ""
        rows = task_decisions(ws.query, self.task)
        self.runtime.decisions = {item: json.loads(value) for item, value in rows}
        return hashlib.blake2b(canonical_json(rows).encode(), digest_size=16).hexdigest()

    def human_labels(self, items: Sequence[Item]) -> dict[str, bool]:
        """item id -> True (keep) / False (reject), for the items a person decided."""
        if self.task:
            decided = self.runtime.decisions
            values = {item.id: decided[item.id] for item in items if item.id in decided}
            where = f"task {self.task!r}"
        else:
            values = {item.id: item.get(self.label) for item in items if item.get(self.label) is not None}
            where = f"property {self.label!r}"
        labels = {}
        for item_id, value in values.items():
            if not isinstance(value, (str, bool)) or value not in LABELS:
                raise ItemError(f"smart_filter: {where} of item {item_id[:12]} is {value!r}, not keep/reject")
            labels[item_id] = LABELS[value]
        return labels

    def apply_all(self, items: Sequence[Item]) -> list[Outcome]:
        import numpy as np
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        labels = self.human_labels(items)
        counts = {"keep": sum(labels.values()), "reject": len(labels) - sum(labels.values())}
        if min(counts.values()) < self.min_per_class:
            raise ItemError(
                f"smart_filter needs at least {self.min_per_class} decided items of each class; "
                f"it has {counts['keep']} keep and {counts['reject']} reject"
            )
        matrix = items_matrix(items, self.embedding)
        decided = np.array([item.id in labels for item in items])
        target = np.array([labels.get(item.id, False) for item in items])
        if self.regularization is None:  # chosen for calibrated probabilities (log loss), by cross-validation
            folds = min(5, *counts.values())
            model = LogisticRegressionCV(
                Cs=10, cv=folds, scoring="neg_log_loss", max_iter=2000, class_weight="balanced"
            )
        else:
            model = LogisticRegression(C=self.regularization, max_iter=2000, class_weight="balanced")
        with warnings.catch_warnings():  # scikit-learn's notices about future defaults
            warnings.simplefilter("ignore", FutureWarning)
            model.fit(matrix[decided], target[decided])
        p_keep = model.predict_proba(matrix)[:, list(model.classes_).index(True)]
        chosen = float(model.C_[0]) if self.regularization is None else self.regularization
        self.runtime.report = heldout_report(
            matrix[decided], target[decided], chosen, self.confidence, min(5, *counts.values())
        )
        return [self.outcome(item, labels.get(item.id), float(p)) for item, p in zip(items, p_keep)]

    def usage(self) -> dict[str, float]:
        return dict(self.runtime.report)

    def outcome(self, item: Item, human: bool | None, p_keep: float) -> Outcome:
        if human is not None:
            decision, by = ("keep" if human else "reject"), "human"
        elif max(p_keep, 1 - p_keep) >= self.confidence:
            decision, by = ("keep" if p_keep >= 0.5 else "reject"), "model"
        else:
            decision = by = None
        value = {"decision": decision, "by": by, "p_keep": round(p_keep, 4)}
        dropped = None
        if self.drop and decision == "reject":
            dropped = (
                "rejected by a person"
                if by == "human"
                else f"smart_filter: predicted reject (p_keep {p_keep:.3f}, confidence {self.confidence})"
            )
        return Outcome(props={"smart_filter": value}, dropped=dropped)


def heldout_report(x: Any, y: Any, c: float, confidence: float, folds: int) -> dict[str, float]:
    """Cross-validated accuracy on the person's labels (each predicted by a model that did not see
    it): over all of them, over those the model would apply (p >= `confidence`), and that share."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if folds < 2:
        return {}
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        split = StratifiedKFold(folds, shuffle=True, random_state=0)
        p = cross_val_predict(model, x, y, cv=split, method="predict_proba")[:, 1]
    right = (p >= 0.5) == y
    sure = np.maximum(p, 1 - p) >= confidence
    report = {
        "heldout_accuracy": round(float(right.mean()), 4),
        "heldout_coverage": round(float(sure.mean()), 4),
    }
    if sure.any():
        report["heldout_confident_accuracy"] = round(float(right[sure].mean()), 4)
    return report
