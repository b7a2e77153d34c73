"""The review app's ranking routes: the next pairs to ask, and answers (one committed transaction each).

    GET    /api/rank/{task}?n=3&pending=a:b,..&avoid=id,..   progress and up to n pairs to ask
    PUT    /api/rank/{task}/pairs    {"left", "right", "winner": "left" | "right" | null}
    DELETE /api/rank/{task}/pairs/{left}/{right}             undo an answer

Pairs are chosen from a fit of the stored answers (refit when one is stored, in the thread pool so
answers never wait for a fit); `pending` lists pairs the client sent but may not have stored yet, so
none is asked twice.
"""

import threading
from pathlib import Path
from typing import Annotated, Any

from captionary.core.arrays import load_matrix
from captionary.core.comparisons import ComparisonStore

MAX_PAIRS = 10


def add_rank_routes(
    app: Any, workspace: Path, store: Any, bulk: Any, blobs: Any, task_step: Any, item_id: Any
) -> None:
    """Add the routes to `app`. `store` (decisions' connection) checks items inline, `bulk` lists
    them for a fit; `task_step(name)` rebuilds a task's step; `item_id` matches item ids."""
    from fastapi import Body, HTTPException

    answers = ComparisonStore(Path(workspace) / "captionary.db")  # fsynced: answers are human work
    sessions: dict[str, tuple[Any, Any]] = {}  # task -> (what the fit saw, the fit)
    fitting = threading.Lock()
    closing = app.state.close

    def close() -> None:
        answers.close()
        closing()

    app.state.close = close

    def rank_step(name: str) -> Any:
        step = task_step(name)
        if getattr(step, "task_kind", "") != "rank":
            raise HTTPException(400, f"task {name!r} is not a ranking task")
        return step

    def session(name: str) -> tuple[Any, dict[str, Any]]:
        """The task's current fit (refit when answers or items changed) and its items by id."""
        step = rank_step(name)
        items = {it.item: it for it in bulk.items(name)}
        seen = (answers.latest(name), tuple(items), step.embedding)
        with fitting:
            known = sessions.get(name)
            if known is not None and known[0] == seen:
                return known[1], items
            x = None
            if step.embedding and items:
                refs = [it.props.get(step.embedding) for it in items.values()]
                if any(ref is None for ref in refs):
                    raise HTTPException(500, f"task {name!r}: an item has no {step.embedding!r}")
                x = load_matrix(blobs, refs)
            fitted = step.session(list(items), answers.answers(name), x)
            sessions[name] = (seen, fitted)
            return fitted, items

    def shown(it: Any) -> dict[str, Any]:
        return {
            "id": it.item,
            "image": it.image,
            "name": it.name,
            "width": it.props.get("width"),
            "height": it.props.get("height"),
        }

    @app.get("/api/rank/{name}")
    def next_pairs(name: str, n: int = 3, pending: str = "", avoid: str = "") -> dict[str, Any]:
        fitted, items = session(name)
        sent = set()
        for pair in filter(None, pending.split(",")):
            left, _, right = pair.partition(":")
            sent.add((left, right))
        count = max(0, min(n, MAX_PAIRS))
        progress = fitted.progress()
        pairs = fitted.next_pairs(count, sent, [i for i in avoid.split(",") if i]) if count else []
        return {
            "name": name,
            "kind": "rank",
            "items": len(items),
            "progress": progress.as_dict(),
            "pairs": [{"left": shown(items[a]), "right": shown(items[b])} for a, b in pairs],
        }

    def checked(name: str, left: str, right: str) -> None:
        rank_step(name)
        for item in (left, right):
            if not item_id.match(item) or not store.has_item(name, item):
                raise HTTPException(404, f"item {item!r} is not part of task {name!r}")
        if left == right:
            raise HTTPException(400, "a pair is two different items")

    @app.put("/api/rank/{name}/pairs")
    async def answer(
        name: str,
        left: Annotated[str, Body()],
        right: Annotated[str, Body()],
        winner: Annotated[str | None, Body()] = None,
    ) -> dict[str, Any]:
        # inline, as decisions are: a commit takes about a millisecond
        checked(name, left, right)
        if winner not in ("left", "right", None):
            raise HTTPException(400, f"winner is 'left', 'right' or null, not {winner!r}")
        chosen = None if winner is None else left if winner == "left" else right
        decided_at = answers.answer(name, left, right, chosen)
        return {"saved": True, "left": left, "right": right, "winner": winner, "decided_at": decided_at}

    @app.delete("/api/rank/{name}/pairs/{left}/{right}")
    async def undo(name: str, left: str, right: str) -> dict[str, Any]:
        checked(name, left, right)
        return {"saved": True, "removed": answers.undo(name, left, right)}
