"""`captionary items`: what is in a workspace, what was dropped or failed and why; and the helpers the
other commands share (a path must already be a workspace; the run's dropped-items note)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from captionary.errors import ConfigError

SHOWN_DROPPED = 5
PROPS_WIDTH = 100


def add_items_command(commands: Any) -> None:
    items = commands.add_parser(
        "items", help="list a workspace's items: kept, dropped (with the step and reason) or failed"
    )
    items.add_argument("workspace", type=Path)
    items.add_argument("--where", metavar="EXPR", help="only items for which EXPR (as in filter) is true")
    items.add_argument("--dropped", action="store_true", help="only items a step dropped")
    items.add_argument("--failed", action="store_true", help="only items that failed in the latest run")
    items.add_argument("--json", action="store_true", help="one JSON object per line")
    items.add_argument("--limit", type=int, metavar="N", help="at most N items")
    items.set_defaults(func=run_items)


def existing_workspace(path: Path) -> Path:
    """`path` if it is a workspace; otherwise the one clear error (only `run` creates workspaces)."""
    from captionary.core.workspace import DB_NAME

    if not (path / DB_NAME).is_file():
        what = "does not exist" if not path.exists() else f"has no {DB_NAME}"
        raise ConfigError(
            f"{path} is not a captionary workspace ({what}); `captionary run` creates one, "
            f"the other commands only read it"
        )
    return path


def run_items(args: argparse.Namespace) -> int:
    from captionary.core.expression import Expression

    existing_workspace(args.workspace)
    where = None
    if args.where:
        try:
            where = Expression(args.where)
        except ValueError as exc:
            raise ConfigError(f"--where: {exc}") from None
    shown = 0
    for row in list_items(args.workspace, dropped=args.dropped, failed=args.failed):
        if where is not None and not _matches(where, row):
            continue
        if args.limit is not None and shown >= args.limit:
            break
        shown += 1
        print(json.dumps(row, ensure_ascii=False) if args.json else _line(row))
    if not args.json and shown == 0:
        print("no items", file=sys.stderr)
    return 0


def list_items(workspace: Path, *, dropped: bool = False, failed: bool = False) -> list[dict[str, Any]]:
    """The items of the latest complete run (`state`: kept or dropped, with the step and reason) and
    the latest run's failures (`state` failed). `dropped` / `failed` keep only those (both: either)."""
    from captionary.core import item_state
    from captionary.core.db import connect
    from captionary.core.workspace import DB_NAME

    db = connect(workspace / DB_NAME, readonly=True)
    read = _reader(db)
    try:
        rows: list[dict[str, Any]] = []
        if dropped or not failed:
            listed = item_state.listing(read, dropped_only=dropped and not failed)
            for item, name, source, props, step, reason in listed:
                state = "kept" if step is None else "dropped"
                if failed and state == "kept":
                    continue
                rows.append(_row(item, name, source, state, step, reason, props))
        if failed or not dropped:
            rows += [
                _row(item, name, source, "failed", step, reason, props)
                for item, step, reason, source, name, props in item_state.latest_failures(read)
            ]
        return rows
    finally:
        db.close()


def _reader(db: Any) -> Any:
    return lambda sql, params: db.execute(sql, params).fetchall()


def _row(
    item: str | None,
    name: str | None,
    source: str | None,
    state: str,
    step: str | None,
    reason: str | None,
    props: str | None,
) -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "step": step,
        "reason": reason,
        "properties": json.loads(props) if props else {},
        "id": item,
        "source": source,
    }


def _matches(where: Any, row: dict[str, Any]) -> bool:
    from captionary.core.expression import ExpressionError

    facts = {
        **row["properties"],
        "name": row["name"],
        "source": row["source"],
        "state": row["state"],
        "dropped_by": row["step"] if row["state"] == "dropped" else None,
        "drop_reason": row["reason"] if row["state"] == "dropped" else None,
        "error": f"{row['step']}: {row['reason']}" if row["state"] == "failed" else None,
    }
    try:
        return bool(where(facts))
    except ExpressionError as exc:
        raise ConfigError(f"--where: {exc}") from None
    except Exception:  # a value of the wrong type for this item: it does not match (as in browse)
        return False


def _line(row: dict[str, Any]) -> str:
    name = row["name"] or row["source"] or row["id"]
    text = f"{name}  {row['state']}"
    if row["step"]:
        text += f"  {row['step']}: {row['reason']}"
    props = json.dumps(row["properties"], ensure_ascii=False, sort_keys=True)
    if props != "{}":
        text += "  " + (props if len(props) <= PROPS_WIDTH else props[: PROPS_WIDTH - 3] + "...")
    return text


def dropped_note(workspace: Path, shown: int = SHOWN_DROPPED) -> str | None:
    """For the end of `captionary run`: a few dropped items with their reasons, and the command that
    lists them all. None when nothing is dropped."""
    from captionary.core import item_state
    from captionary.core.db import connect
    from captionary.core.workspace import DB_NAME

    db = connect(workspace / DB_NAME, readonly=True)
    try:
        total, rows = item_state.dropped_sample(_reader(db), shown)
    finally:
        db.close()
    if not total:
        return None
    lines = [f"{total} item(s) dropped:"]
    lines += [f"  {name}: {step}: {reason}" for name, step, reason in rows]
    if total > len(rows):
        lines.append(f"  ... and {total - len(rows)} more")
    lines.append(f"list them all: captionary items {_shell_path(workspace)} --dropped")
    return "\n".join(lines)


def _shell_path(path: Path) -> str:
    relative = os.path.relpath(path)
    text = relative if not relative.startswith("../../") else str(path)
    return text if all(c.isalnum() or c in "/._-+" for c in text) else repr(text)
