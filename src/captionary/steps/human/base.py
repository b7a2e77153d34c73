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
from captionary.errors import ConfigError, ParamError
from captionary.pipeline.step import Outcome, Step


class HumanStep(Step):
    """A review task. `task` names it (default: the step name); decisions are stored under it."""

    kind: ClassVar[str] = "human"
    task_kind: ClassVar[str] = ""  # filter | tag | caption | rank: which review screen the app shows
    collects_all: ClassVar[bool] = False  # True: needs every item before any goes on (human_rank)
    reads_image: ClassVar[bool] = False

    def validate(self) -> None:
        self._check_task_name()
        for module in ("fastapi", "uvicorn"):  # found, not imported: a re-run with no questions stays fast
            if importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"{self.name} serves the review app, which needs {module}: "
                    "pip install 'captionary[review]'"
                )

    def _check_task_name(self) -> None:
        """The name must survive the app's route `/api/tasks/{name}` (one URL path segment)."""
        name = self.task_name()
        problem = task_name_problem(name)
        if problem is not None:
            param = "task" if getattr(self, "task", "") else None
            where = f"{self.name}.task" if param else self.name
            raise ParamError(f"{where}: task name {name!r} {problem}", param=param)

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


MAX_TASK_NAME = 200


def task_name_problem(name: str) -> str | None:
    """Why a task name cannot be a review task's (the review app's URL path segment), or None."""
    if "/" in name:
        return "cannot hold '/' (it is one segment of the review app's URLs)"
    if name in (".", ".."):
        return "cannot be '.' or '..' (browsers resolve them in URLs)"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "cannot hold control characters"
    if len(name) > MAX_TASK_NAME:
        return f"is longer than {MAX_TASK_NAME} characters"
    return None
