"""human_caption: a person writes or corrects each image's caption in the review app."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Outcome
from captionary.steps.human.base import HumanStep


class HumanCaption(HumanStep):
    """Write or edit each image's caption in the review app (Ctrl/Cmd+Enter saves and advances)."""

    name: ClassVar[str] = "human_caption"
    task_kind: ClassVar[str] = "caption"
    writes: ClassVar[tuple[str, ...]] = ("caption",)

    task: str = ""

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"a caption decision is a string, not {type(value).__name__}")
        return value.strip()

    def outcome(self, item: Item, value: Any) -> Outcome:
        return Outcome(props={"caption": value})
