"""The decision store moved to `captionary.core.decisions` (a core service: human stages, global steps
and the review app all use it); these names stay importable from here."""

from captionary.core.decisions import TASK_KINDS, DecisionStore, TaskItem

__all__ = ["TASK_KINDS", "DecisionStore", "TaskItem"]
