"""The review app's gate: an ASGI middleware in front of every route, so nothing a route does (reading
a body above all) happens for a request that is not allowed.

In order: the `Host` header must name the bound loopback address (a DNS-rebinding page in the
user's browser would send its own host name), the access token must be there (query, cookie or
bearer header), and a body may be at most `max_body` bytes: a larger `Content-Length` is answered
413 before a byte is read, and a streamed (chunked) body is cut off at the limit with 413.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_BODY = 256 * 1024
"""Bytes of a request body: a caption or a tag list (the only bodies the app takes) fits many times."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def loopback_hosts(host: str, port: int) -> frozenset[str] | None:
    """The `Host` header values a server bound to `host:port` accepts: the loopback names with the
    port on a loopback bind; None (any) on another bind, where the token alone guards."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    names = ("localhost", "127.0.0.1", "[::1]")
    hosts = {f"{name}:{port}" for name in names}
    return frozenset(hosts | set(names) if port == 80 else hosts)


class RequestGuard:
    """ASGI middleware: Host (when `hosts` is given), token, then body size, for every HTTP request."""

    def __init__(
        self,
        app: Any,
        *,
        token: str,
        cookie: str,
        hosts: frozenset[str] | None = None,
        max_body: int = MAX_BODY,
    ):
        self.app = app
        self.token = token.encode()
        self.cookie = cookie
        self.hosts = hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope)  # headers, query and cookies only: the body is not touched
        if self.hosts is not None and request.headers.get("host", "").lower() not in self.hosts:
            await _refuse(send, 403, "this server only answers requests addressed to it (Host header)")
            return
        if not self._authorized(request):
            await _refuse(send, 401, "open the URL captionary printed: it carries the access token")
            return
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _refuse(send, 413, f"a request body is at most {self.max_body} bytes")
            return
        await self.app(scope, self._limited(receive), send)

    def _authorized(self, request: Any) -> bool:
        given = request.query_params.get("token") or request.cookies.get(self.cookie) or ""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = given or header[7:]
        return secrets.compare_digest(given.encode(), self.token)

    def _limited(self, receive: Receive) -> Receive:
        """`receive` that stops a streamed body at the limit (413 through the app's error handling)."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    from starlette.exceptions import HTTPException

                    raise HTTPException(413, f"a request body is at most {self.max_body} bytes")
            return message

        return limited


async def _refuse(send: Send, status: int, detail: str) -> None:
    """A JSON error answer, with the connection closed (an unread body is not read)."""
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
