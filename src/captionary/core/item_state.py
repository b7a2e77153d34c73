"""The `item_state` table's owner: every item after the latest run that reached it (what
`Workspace.items()`, the review app and the loader read). All of its SQL lives here.

Readers pass `read(sql, params) -> rows` (a workspace's `query`, a DecisionStore's `read`, a
connection's `execute(...).fetchall`); writes go through the run's DbWriter with `UPSERT` / `DELETE`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Read = Callable[[str, tuple], list[tuple]]

COLUMNS = "item, image, source, name, props, dropped_by, reason, format, base, recipe"
UPSERT = "INSERT OR REPLACE INTO item_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
"""(item, image, source, name, props, dropped_by, reason, format, base, recipe, run)"""
DELETE = "DELETE FROM item_state WHERE item = ?"


def all_states(read: Read, *, include_dropped: bool = True, order_by_name: bool = False) -> list[tuple]:
    """Rows of `COLUMNS` for every item (kept ones only unless `include_dropped`)."""
    sql = f"SELECT {COLUMNS} FROM item_state"
    if not include_dropped:
        sql += " WHERE dropped_by IS NULL"
    return read(sql + (" ORDER BY name" if order_by_name else ""), ())


def count_kept(read: Read) -> int:
    return read("SELECT count(*) FROM item_state WHERE dropped_by IS NULL", ())[0][0]


def count_all(read: Read) -> int:
    return read("SELECT count(*) FROM item_state", ())[0][0]


def stored_bases(read: Read) -> list[str]:
    """The blobs items' images start from (kept by `gc`)."""
    return [row[0] for row in read("SELECT base FROM item_state WHERE base IS NOT NULL AND base != ''", ())]


def props_with_arrays(read: Read) -> list[str]:
    """Property JSON texts that refer to stored arrays (kept by `gc`)."""
    return [row[0] for row in read('SELECT props FROM item_state WHERE props LIKE \'%"array":"%\'', ())]


def listing(read: Read, *, dropped_only: bool = False) -> list[tuple]:
    """(item, name, source, props, dropped_by, reason) of every item (or the dropped ones), by name."""
    where = " WHERE dropped_by IS NOT NULL" if dropped_only else ""
    return read(
        f"SELECT item, name, source, props, dropped_by, reason FROM item_state{where} ORDER BY name, item", ()
    )


def dropped_sample(read: Read, limit: int) -> tuple[int, list[tuple]]:
    """How many items are dropped, and (name, dropped_by, reason) of the first `limit` by name."""
    (total,) = read("SELECT count(*) FROM item_state WHERE dropped_by IS NOT NULL", ())[0]
    rows = read(
        "SELECT name, dropped_by, reason FROM item_state WHERE dropped_by IS NOT NULL "
        "ORDER BY name, item LIMIT ?",
        (limit,),
    )
    return total, rows


def latest_failures(read: Read) -> list[tuple]:
    """(item, step, reason, source, name, props) of the latest run's errors, with the item's state
    where it has one."""
    return read(
        "SELECT e.item, e.step, e.reason, e.source, s.name, s.props FROM errors e "
        "LEFT JOIN item_state s ON s.item = e.item "
        "WHERE e.run = (SELECT max(id) FROM runs) ORDER BY e.rowid",
        (),
    )


def page(read: Read, where: str, params: tuple, limit: int) -> list[tuple]:
    """(name, item, image, dropped_by) in (name, item) order; `where` is a keyset condition on those."""
    return read(
        f"SELECT name, item, image, dropped_by FROM item_state {where} ORDER BY name, item LIMIT ?",
        (*params, limit),
    )


def facts(read: Read, items: list[str]) -> list[tuple]:
    """(item, source, props, dropped_by, reason) of the given items."""
    marks = ",".join("?" * len(items))
    return read(
        f"SELECT item, source, props, dropped_by, reason FROM item_state WHERE item IN ({marks})",
        tuple(items),
    )


def details(read: Read, item: str) -> tuple | None:
    """(image, name, source, props, dropped_by, reason) of one item, or None."""
    rows = read(
        "SELECT image, name, source, props, dropped_by, reason FROM item_state WHERE item = ?", (item,)
    )
    return rows[0] if rows else None


def name_of(read: Read, item: str) -> str | None:
    rows = read("SELECT name FROM item_state WHERE item = ?", (item,))
    return rows[0][0] if rows else None


def image_source(read: Read, item: str, image: str) -> tuple[Any, Any] | None:
    """(base, recipe) of `image` as item `item` shows it: in a review task, in the latest state, or
    the original itself."""
    rows = read(
        "SELECT base, recipe FROM task_items WHERE item = ? AND image = ? "
        "UNION ALL SELECT base, recipe FROM item_state WHERE item = ? AND image = ? "
        "UNION ALL SELECT id, NULL FROM items WHERE id = ? AND id = ? LIMIT 1",
        (item, image, item, image, item, image),
    )
    return rows[0] if rows else None
