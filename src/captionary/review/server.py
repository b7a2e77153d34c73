"""The review app's HTTP server (FastAPI): tasks, decisions, renditions and the browse view.

Every request needs the access token (from the printed URL; kept in a SameSite=Strict cookie after
the first page load). Files are never named by the client: images are looked up by item id and image
id in the database, and only blob-store bytes are sent. No CORS headers are set at all.
"""

import hashlib
import json
import re
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from captionary.core import item_state
from captionary.core.blobstore import workspace_blob_store
from captionary.core.decisions import DecisionStore
from captionary.errors import CaptionaryError
from captionary.review.browse import PAGE, browse, details, parse_cursor
from captionary.review.guard import RequestGuard
from captionary.review.rank_routes import add_rank_routes
from captionary.review.thumbnails import SIZES, Thumbnails

COOKIE_PREFIX = "captionary_"
"""A cookie name carries a hash of the token: cookies ignore ports, and two servers must not share one."""
ITEM_ID = re.compile(r"^[0-9a-f]{64}$")
IMAGE_ID = re.compile(r"^~?[0-9a-f]{32,128}$")
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "review.js": "text/javascript; charset=utf-8",
    "browse.js": "text/javascript; charset=utf-8",
    "rank.js": "text/javascript; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"
CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; base-uri 'none'"
WARM_AHEAD = 24


FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
    b'fill="#2b6cb0"/><path d="M4 11l3-4 2 3 1.5-2L13 11z" fill="#fff"/></svg>'
)
"""The app's icon (an SVG: browsers take any image type at /favicon.ico)."""


def create_app(
    workspace: Path,
    token: str,
    progress: Callable[[], Any] | None = None,
    hosts: frozenset[str] | None = None,
) -> Any:
    """The ASGI app for one workspace; `token` is required on every request, checked with the `Host`
    header (one of `hosts`, when given) and the body size before any route runs (`guard.py`).
    `progress` gives the serving run's per-step counts (`GET /api/run`)."""
    from fastapi import Body, FastAPI, HTTPException, Request, Response
    from fastapi.responses import JSONResponse

    store = DecisionStore(Path(workspace) / "captionary.db")  # decisions: fsynced, never behind a long read
    bulk = DecisionStore(Path(workspace) / "captionary.db", durable=False)  # item lists, renditions, browse
    blobs = workspace_blob_store(workspace)
    thumbs = Thumbnails(bulk, blobs)
    static = {
        name: resources.files("captionary.review").joinpath("static", name).read_bytes() for name in STATIC
    }
    steps: dict[str, Any] = {}

    cookie = COOKIE_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:12]

    app = FastAPI(title="captionary review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(RequestGuard, token=token, cookie=cookie, hosts=hosts)  # every route, before its body

    def close() -> None:
        thumbs.close()
        bulk.close()
        store.close()

    app.state.close = close

    def task_step(name: str) -> Any:
        """The human step behind a task, rebuilt from its stored description (once per config)."""
        rows = store.read("SELECT config FROM tasks WHERE name = ?", (name,))
        if not rows:
            raise HTTPException(404, f"no review task {name!r}")
        key = rows[0][0]
        if key not in steps:
            from captionary.pipeline.registry import STEPS

            described = dict(json.loads(key)["step"])
            step_name = described.pop("step")
            try:
                steps[key] = STEPS.get(step_name)(**described)
            except CaptionaryError as exc:  # e.g. a custom human step this process cannot import
                raise HTTPException(500, f"task {name!r}: cannot rebuild its step: {exc}") from None
        return steps[key]

    add_rank_routes(app, workspace, store, bulk, blobs, task_step, ITEM_ID)

    @app.get("/")
    def index(request: Request) -> Response:
        response = Response(static["index.html"], media_type=STATIC["index.html"])
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if request.query_params.get("token"):
            response.set_cookie(cookie, token, httponly=True, samesite="strict")
        return response

    @app.get("/static/{name}")
    def static_file(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "not found")
        return Response(static[name], media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico")
    def favicon() -> Response:  # what a browser asks for on every page: an icon, not a 404 in the log
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/run")
    async def run() -> dict[str, Any]:
        return {"running": progress is not None, "steps": progress() if progress is not None else []}

    @app.get("/api/tasks")
    def tasks() -> list[dict[str, Any]]:
        return bulk.tasks()

    @app.get("/api/tasks/{name}")
    def task(name: str, after: int = -1, at: int | None = None, since: float | None = None) -> dict[str, Any]:
        """The task's items after position `after` and their decisions; decisions made since `since`
        (elsewhere: another device or tab); thumbnails of the items ahead of `at` are made now."""
        now = time.time()
        found = bulk.task(name)
        if found is None:
            raise HTTPException(404, f"no review task {name!r}")
        items = bulk.items(name, after)
        decided = bulk.decisions(name, [it.item for it in items])
        near = items if at is None else bulk.items(name, at - 1, 2 * WARM_AHEAD)
        near_decided = decided if at is None else bulk.decisions(name, [it.item for it in near])
        ahead = [it for it in near if it.item not in near_decided][:WARM_AHEAD]
        thumbs.warm([(it.item, it.image, it.base, it.recipe) for it in ahead])
        known = set(found["config"].get("tags", []))
        for it in items:
            known.update(it.props.get("tags") or [])
        for value in decided.values():
            if isinstance(value, list):
                known.update(value)
        return {
            **found,
            "items": [
                {
                    "id": it.item,
                    "position": it.position,
                    "image": it.image,
                    "name": it.name,
                    "caption": it.props.get("caption"),
                    "tags": it.props.get("tags"),
                    "width": it.props.get("width"),
                    "height": it.props.get("height"),
                }
                for it in items
            ],
            "decisions": decided,
            "changed": {} if since is None else {i: v for i, v, _ in bulk.decided_since(name, since)},
            "now": now,
            "known_tags": sorted(t for t in known if isinstance(t, str)),
        }

    @app.put("/api/tasks/{name}/items/{item}")
    async def decide(name: str, item: str, value: Annotated[Any, Body(embed=True)]) -> dict[str, Any]:
        # inline, not in the thread pool: a commit takes about a millisecond, and a thread hand-off
        # under load took several (benchmarks/review.py)
        step = task_step(name)
        if not ITEM_ID.match(item) or not store.has_item(name, item):
            raise HTTPException(404, f"item {item!r} is not part of task {name!r}")
        try:
            value = step.check(value)
        except ValueError as exc:
            raise HTTPException(400, f"task {name!r}, item {item[:12]}: {exc}") from None
        decided_at = store.decide(name, item, value)
        return {"saved": True, "item": item, "value": value, "decided_at": decided_at}

    @app.delete("/api/tasks/{name}/items/{item}")
    async def undo(name: str, item: str) -> dict[str, Any]:
        task_step(name)
        if not ITEM_ID.match(item) or not store.has_item(name, item):
            raise HTTPException(404, f"item {item!r} is not part of task {name!r}")
        store.undo(name, item)
        return {"saved": True, "item": item, "value": None}

    @app.get("/api/image/{item}/{image}")
    def image(item: str, image: str, size: str = "thumb") -> Response:
        if size not in SIZES or not ITEM_ID.match(item) or not IMAGE_ID.match(image):
            raise HTTPException(404, "no such image")
        found = item_state.image_source(bulk.read, item, image)
        if found is None:
            raise HTTPException(404, "no such image")
        try:
            data = thumbs.get(item, image, found[0], found[1], size)
        except Exception as exc:
            return JSONResponse({"detail": f"cannot render image {item[:12]}: {exc}"}, status_code=500)
        return Response(data, media_type="image/webp", headers={"Cache-Control": IMMUTABLE})

    @app.get("/api/browse")
    def browse_items(q: str = "", after: str = "", limit: int = PAGE) -> dict[str, Any]:
        try:
            return browse(bulk, q, parse_cursor(after), limit)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/api/browse/{item}")
    def browse_item(item: str) -> dict[str, Any]:
        found = details(bulk, item) if ITEM_ID.match(item) else None
        if found is None:
            raise HTTPException(404, f"no item {item!r}")
        return found

    return app
