"""The browse view's queries: the items of the workspace a page at a time (keyset paging in name
order), filtered by a safe expression over their properties, review decisions (by task name) and errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from captionary.core import item_state
from captionary.core.decisions import DecisionStore
from captionary.core.expression import Expression, ExpressionError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PAGE = 500
"""Items per browse page unless asked otherwise; `MAX_PAGE` is the most one request returns."""
MAX_PAGE = 5000
SCAN = 10_000
"""Rows a filtered page looks at, at most: a filter that matches little answers with fewer items and a
cursor to go on from, rather than scanning a million rows in one request."""
BATCH = 500  # rows whose properties, decisions and errors are read together

Cursor = tuple[str | None, str]
"""(name, item id) of the last row a page looked at: the next page starts after it."""


def parse_cursor(text: str | None) -> Cursor | None:
    """The `after` parameter: the JSON `[name, item]` a previous page returned as `next`."""
    if not text:
        return None
    try:
        name, item = json.loads(text)
        if (name is None or isinstance(name, str)) and isinstance(item, str):
            return name, item
    except (ValueError, TypeError):
        pass
    raise ValueError(f"bad cursor {text[:200]!r}: expected the JSON [name, item] a page returned as next")


def browse(
    store: DecisionStore,
    query: str = "",
    after: Cursor | None = None,
    limit: int = PAGE,
    scan: int = SCAN,
) -> dict[str, Any]:
    """One page of the items matching `query` (e.g. `'dog' in tags and human_filter == 'keep'`), in
    (name, id) order, after the cursor `after`.

    Returns `items` (at most `limit`), `next` (the cursor of the following page; None at the end)
    and `total`, on the first page only: the number of items in the workspace without a query; with
    one, the number of matches if this page is also the last, else None (a filter is evaluated page by
    page, looking at `scan` rows at most). Names in the query: every property, `name`, `source`,
    `dropped_by`, `drop_reason`, `error` (the latest run's error for the item) and each review task's
    name (its decision for the item), `by` and `confidence` (who made the learned calls: `learned`).
    Raises ValueError for a query the expression language refuses.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
    expression = Expression(query) if query.strip() else None
    where, params = _after(after)
    keys = item_state.page(store.read, where, params, limit + 1 if expression is None else scan)
    if expression is None:
        page = [_entry(*row) for row in keys[:limit]]
        total = item_state.count_all(store.read) if after is None else None
        more = len(keys) > limit
        return {"items": page, "next": _cursor(keys[limit - 1]) if more else None, "total": total}
    page, stopped = _matching(store, expression, keys, limit)
    if stopped is not None:
        next_cursor: Cursor | None = _cursor(keys[stopped])
    else:
        next_cursor = _cursor(keys[-1]) if len(keys) == scan else None
    total = len(page) if after is None and next_cursor is None else None
    return {"items": page, "next": next_cursor, "total": total}


def _matching(
    store: DecisionStore, expression: Expression, keys: list[tuple], limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """The rows of `keys` that match, up to `limit`; and the index of the row the page stopped at
    when it filled up before the last one (None when every row was looked at)."""
    page: list[dict[str, Any]] = []
    tasks = [task for task in _decided_tasks(store) if IDENTIFIER.match(task)]
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        facts = _facts(store, [row[1] for row in batch], tasks)
        for offset, (name, item, image, dropped_by) in enumerate(batch):
            known = facts(item, name)
            if not _matches(expression, known):
                continue
            entry = _entry(name, item, image, dropped_by)
            if known.get("by") is not None:  # a learned step's call: who made it, how sure the model was
                entry["by"], entry["confidence"] = known["by"], known.get("confidence")
            page.append(entry)
            if len(page) == limit:
                index = start + offset
                return page, index if index < len(keys) - 1 else None
    return page, None


def _decided_tasks(store: DecisionStore) -> list[str]:
    """The tasks that have decisions, one index probe each (not a scan of every decision)."""
    return store.decided_tasks()


def _facts(
    store: DecisionStore, items: list[str], tasks: list[str]
) -> Callable[[str, str | None], dict[str, Any]]:
    """What a query may name about each of `items`: properties, state, decisions and errors."""
    marks = ",".join("?" * len(items))
    rows = {row[0]: row for row in item_state.facts(store.read, items)}
    decided: dict[str, dict[str, Any]] = {}
    for task in tasks:
        for item, value in store.decisions(task, items).items():
            decided.setdefault(item, {})[task] = value
    errors = dict(
        store.read(
            "SELECT item, step || ': ' || reason FROM errors "
            f"WHERE run = (SELECT max(id) FROM runs) AND item IN ({marks})",
            tuple(items),
        )
    )

    def names(item: str, name: str | None) -> dict[str, Any]:
        _, source, props, dropped_by, reason = rows.get(item, (item, None, None, None, None))
        values = json.loads(props or "{}")
        return {
            **learned(values),
            **values,
            **decided.get(item, {}),
            "name": name,
            "source": source,
            "dropped_by": dropped_by,
            "drop_reason": reason,
            "error": errors.get(item),
        }

    return names


def learned(props: dict[str, Any]) -> dict[str, Any]:
    """Who made an item's learned calls (`smart_filter`, `smart_tag`: a property with a `by`;
    `human_rank`: `rank_by`): `by` is "model" when a model made any of them, else "human" when a
    person did, else None; `confidence` is the model's least sure call (None without one)."""
    bys, sure = [], []
    for value in props.values():
        if isinstance(value, dict) and "by" in value:
            bys.append(value["by"])
            if value["by"] == "model":
                if isinstance(value.get("confidence"), (int, float)):
                    sure.append(float(value["confidence"]))
                elif isinstance(value.get("p_keep"), (int, float)):
                    sure.append(max(value["p_keep"], 1 - value["p_keep"]))
    if props.get("rank_by") is not None:
        bys.append(props["rank_by"])
    by = "model" if "model" in bys else "human" if "human" in bys else None
    return {"by": by, "confidence": round(min(sure), 4) if sure else None}


def _matches(expression: Expression, names: dict[str, Any]) -> bool:
    """The same semantics as `filter`: an absent property makes a comparison false. A value of the
    wrong type for this item (`'dog' in 3`) does not match; an expression that cannot run at all (a
    value too large) is the query's error."""
    try:
        return bool(expression(names))
    except ExpressionError:
        raise
    except Exception:
        return False


def _after(cursor: Cursor | None) -> tuple[str, tuple]:
    """The WHERE clause of rows after `cursor` in (name, item) order (NULL names sort first)."""
    if cursor is None:
        return "", ()
    name, item = cursor
    if name is None:
        return "WHERE (name IS NULL AND item > ?) OR name IS NOT NULL", (item,)
    return "WHERE name > ? OR (name = ? AND item > ?)", (name, name, item)


def _cursor(row: tuple) -> Cursor:
    return row[0], row[1]


def _entry(name: str | None, item: str, image: str | None, dropped_by: str | None) -> dict[str, Any]:
    return {"id": item, "image": image, "name": name, "dropped": dropped_by is not None}


def details(store: DecisionStore, item: str) -> dict[str, Any] | None:
    """Everything known about one item: properties, state, decisions and errors."""
    row = item_state.details(store.read, item)
    if row is None:
        return None
    image, name, source, props, dropped_by, reason = row
    decisions = {task: {"value": value, "decided_at": at} for task, value, at in store.item_decisions(item)}
    errors = [
        {"run": run, "step": step, "reason": why}
        for run, step, why in store.read(
            "SELECT run, step, reason FROM errors WHERE item = ? ORDER BY run DESC LIMIT 20", (item,)
        )
    ]
    values = json.loads(props or "{}")
    parent = None
    if isinstance(values.get("parent"), str):  # a fan-out step's child: name its parent too
        parent = {"id": values["parent"], "name": item_state.name_of(store.read, values["parent"])}
    return {
        "id": item,
        "image": image,
        "name": name,
        "source": source,
        "parent": parent,
        "props": values,
        "learned": learned(values),
        "dropped_by": dropped_by,
        "drop_reason": reason,
        "decisions": decisions,
        "errors": errors,
    }
