"""HumanStep: the base of the `human` step kind, a review task answered by a person.

A human step implements `check(value)` (validate what the review app sends) and `outcome(item,
value)` (what a decision does to the item). The executor's human stage stores nothing in the result
cache: decisions live in their own table, keyed by (task, original item id), so re-runs never ask
twice and upstream changes never lose them. Items already decided flow on at once; the rest wait
while the review app is served.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.errors import ConfigError
from captionary.pipeline.step import Outcome, Step


class HumanStep(Step):
    """A review task. `task` names it (default: the step name); decisions are stored under it."""

    kind: ClassVar[str] = "human"
    task_kind: ClassVar[str] = ""  # filter | tag | caption | rank: which review screen the app shows
    collects_all: ClassVar[bool] = False  # True: needs every item before any goes on (human_rank)
    reads_image: ClassVar[bool] = False

    def validate(self) -> None:
        for module in ("fastapi", "uvicorn"):  # found, not imported: a re-run with no questions stays fast
            if importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"{self.name} serves the review app, which needs {module}: "
                    "pip install 'captionary[review]'"
                )

    def task_name(self) -> str:
        return getattr(self, "task", "") or self.name

    def task_config(self) -> dict[str, Any]:
        """What the review screen needs besides the items (e.g. the tag list)."""
        return {}

    def asks(self, item: Item) -> bool:
        """Whether the person is asked about `item`; the others go on unchanged."""
        return True

    def check(self, value: Any) -> Any:
        """Validate a decision from the app; return it normalised or raise ValueError."""
        raise NotImplementedError

    def outcome(self, item: Item, value: Any) -> Outcome:
        """What a decision does to the item."""
        raise NotImplementedError
