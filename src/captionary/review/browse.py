"""The browse view's queries: every item of the workspace, filtered by a safe expression over its
properties, its review decisions (by task name) and its errors."""

from __future__ import annotations

import json
import re
from typing import Any

from captionary.review.decisions import DecisionStore
from captionary.steps.custom.expression import Expression

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _facts(store: DecisionStore) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    decided: dict[str, dict[str, Any]] = {}
    for task, item, value in store.read("SELECT task, item, value FROM decisions"):
        decided.setdefault(item, {})[task] = json.loads(value)
    errors = dict(
        store.read(
            "SELECT item, step || ': ' || reason FROM errors "
            "WHERE run = (SELECT max(id) FROM runs) AND item IS NOT NULL"
        )
    )
    return decided, errors


def browse(store: DecisionStore, query: str = "", limit: int = 200_000) -> dict[str, Any]:
    """Items matching `query` (e.g. `'dog' in tags and human_filter == 'keep'`), in name order.

    Names in the query: every property, `name`, `source`, `dropped_by`, `drop_reason`, `error` (the
    latest run's error for the item) and each review task's name (its decision for the item).
    Raises ValueError for a query the expression language refuses.
    """
    expression = Expression(query) if query.strip() else None
    decided, errors = _facts(store) if expression is not None else ({}, {})
    rows = store.read(
        "SELECT item, image, name, source, props, dropped_by, reason FROM item_state ORDER BY name"
    )
    out = []
    for item, image, name, source, props, dropped_by, reason in rows:
        if expression is not None:
            names = {
                **json.loads(props or "{}"),
                **{t: v for t, v in decided.get(item, {}).items() if IDENTIFIER.match(t)},
                "name": name,
                "source": source,
                "dropped_by": dropped_by,
                "drop_reason": reason,
                "error": errors.get(item),
            }
            try:
                if not expression(names):
                    continue
            except Exception:  # a type mismatch on this item (None > 3): it does not match
                continue
        out.append({"id": item, "image": image, "name": name, "dropped": dropped_by is not None})
    return {"total": len(out), "items": out[:limit]}


def details(store: DecisionStore, item: str) -> dict[str, Any] | None:
    """Everything known about one item: properties, state, decisions and errors."""
    rows = store.read(
        "SELECT image, name, source, props, dropped_by, reason FROM item_state WHERE item = ?", (item,)
    )
    if not rows:
        return None
    image, name, source, props, dropped_by, reason = rows[0]
    decisions = {
        task: {"value": json.loads(value), "decided_at": at}
        for task, value, at in store.read(
            "SELECT task, value, decided_at FROM decisions WHERE item = ? ORDER BY task", (item,)
        )
    }
    errors = [
        {"run": run, "step": step, "reason": why}
        for run, step, why in store.read(
            "SELECT run, step, reason FROM errors WHERE item = ? ORDER BY run DESC LIMIT 20", (item,)
        )
    ]
    return {
        "id": item,
        "image": image,
        "name": name,
        "source": source,
        "props": json.loads(props or "{}"),
        "dropped_by": dropped_by,
        "drop_reason": reason,
        "decisions": decisions,
        "errors": errors,
    }
