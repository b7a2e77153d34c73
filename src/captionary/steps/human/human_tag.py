"""human_tag: a person picks tags for each image from a fixed list (plus free tags, if allowed)."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from captionary.core.expression import Expression
from captionary.core.item import Item
from captionary.pipeline.step import Outcome, require
from captionary.steps.human.base import HumanStep


class HumanTag(HumanStep):
    """Tag each image by hand in the review app (digit keys toggle the first ten tags, Enter saves).

    The decision is the item's full tag list: it replaces the `tags` property. The app starts from
    the item's current tags. `ask_if` (an expression, e.g. `tags_uncertain` after `smart_tag`) asks
    only about the items it is true for; the others go on unchanged.
    """

    name: ClassVar[str] = "human_tag"
    task_kind: ClassVar[str] = "tag"
    writes: ClassVar[tuple[str, ...]] = ("tags",)

    tags: list[str]
    free_tags: bool = True
    task: str = ""
    ask_if: str = ""

    def validate(self) -> None:
        super().validate()
        require(bool(self.tags), self, "give at least one tag", "tags")
        require(len(set(self.tags)) == len(self.tags), self, "tags must be distinct", "tags")
        if self.ask_if:
            try:
                Expression(self.ask_if)
            except ValueError as exc:
                require(False, self, str(exc), "ask_if")

    @cached_property
    def ask_test(self) -> Expression | None:
        return Expression(self.ask_if) if self.ask_if else None

    @property
    def reads(self) -> tuple[str, ...]:
        test = self.ask_test
        return tuple(test.names) if test is not None else ()

    def asks(self, item: Item) -> bool:
        test = self.ask_test
        try:
            return test is None or bool(test(item.props))
        except (ValueError, TypeError):  # cannot be told for this item (None > 3): ask the person
            return True

    def task_config(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "free_tags": self.free_tags}

    def check(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise ValueError(f"a tag decision is a list of non-empty strings, not {value!r}")
        tags = list(dict.fromkeys(t.strip() for t in value))
        unknown = [t for t in tags if t not in self.tags]
        if unknown and not self.free_tags:
            raise ValueError(f"tags {unknown} are not in the task's list (free_tags is off)")
        return tags

    def outcome(self, item: Item, value: Any) -> Outcome:
        return Outcome(props={"tags": list(value)})
