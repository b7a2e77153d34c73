"""human_filter: a person keeps or rejects each image in the review app."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Outcome
from captionary.steps.human.base import HumanStep

VALUES = ("keep", "reject")


class HumanFilter(HumanStep):
    """Keep or reject each image by hand in the review app (keys: d/ArrowRight keep, a/ArrowLeft reject)."""

    name: ClassVar[str] = "human_filter"
    task_kind: ClassVar[str] = "filter"

    task: str = ""

    def check(self, value: Any) -> str:
        if value not in VALUES:
            raise ValueError(f"a filter decision is 'keep' or 'reject', not {value!r}")
        return value

    def outcome(self, item: Item, value: Any) -> Outcome:
        return Outcome(dropped="rejected in review" if value == "reject" else None)
