"""Polite HTTP for web sources: one httpx client per crawl, a request rate per kind of request (API
pages, files), retries with exponential backoff that honour `Retry-After` (and pause every request to
the site meanwhile), a User-Agent naming captionary. Failures raise `FetchError` with the reason."""

from __future__ import annotations

import threading
import time
from typing import Any

from captionary.sources.web.site import Request

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 524})


class FetchError(OSError):
    """A request that failed for good (after its retries); the message names the status."""


def user_agent() -> str:
    from captionary import __version__

    return f"captionary/{__version__} (+https://pypi.org/project/captionary/)"


class RateLimit:
    """At most `per_second` requests started per second (spaced evenly; 0 or None: no limit), and a
    shared pause after a `Retry-After`."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_slot = 0.0
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        """Block until this request may start (or `stop` is set)."""
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot, self.paused_until)
            self.next_slot = slot + self.interval
        if slot > now:
            stop.wait(slot - now)

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)


class PoliteClient:
    """GETs through one connection pool with rate limits (`api`, `files`), retries and timeouts."""

    def __init__(
        self,
        *,
        requests_per_second: float | None,
        downloads_per_second: float | None,
        connections: int,
        retries: int = 4,
        timeout: float = 30.0,
        backoff: float = 1.0,
        max_wait: float = 120.0,
        agent: str | None = None,
        max_bytes: int | None = None,
    ):
        import httpx

        self.httpx = httpx
        self.limits = {"api": RateLimit(requests_per_second), "files": RateLimit(downloads_per_second)}
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_bytes = max_bytes
        self.client = httpx.Client(
            headers={"User-Agent": agent or user_agent()},  # every request names its client
            timeout=timeout,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=connections + 1, max_keepalive_connections=connections + 1),
        )
        self.requests = 0  # sent, retries included (for the run's log)
        self.stopped = threading.Event()  # set by close(): waiting requests give up at once

    def close(self) -> None:
        self.stopped.set()
        self.client.close()

    def json(self, request: Request) -> Any:
        """The decoded JSON answer (an empty body is None)."""
        body = self.get(request, "api")
        if not body.strip():
            return None
        try:
            import json

            return json.loads(body)
        except ValueError as exc:
            raise FetchError(f"{request.url}: the answer is not JSON ({exc})") from None

    def get(self, request: Request, kind: str = "files") -> bytes:
        """The body of a 2xx answer; FetchError after the retries, or at once for a 4xx."""
        import random  # on the first request, not at start-up

        limit = self.limits[kind]
        reason = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2**attempt * (0.5 + random.random())
            limit.wait(self.stopped)
            if self.stopped.is_set():
                raise FetchError(f"{_shown(request)}: stopped")
            self.requests += 1
            try:
                with self.client.stream(
                    "GET",
                    request.url,
                    params=request.params or None,
                    headers=request.headers,
                    auth=request.auth,
                ) as response:
                    status = response.status_code
                    if 200 <= status < 300:
                        return self._body(request, response, self.max_bytes if kind == "files" else None)
                    response.read()
                reason = f"HTTP {status} {response.reason_phrase}".rstrip()
                if status not in RETRY_STATUSES:
                    raise FetchError(f"{_shown(request)}: {reason}{_said(response)}")
                after = retry_after(response.headers.get("Retry-After"))
                if after is not None:
                    wait = after
                    limit.pause(min(after, self.max_wait))  # the whole site waits, not only this request
            except self.httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if attempt < self.retries:
                self.stopped.wait(min(wait, self.max_wait))
        raise FetchError(f"{_shown(request)}: failed after {self.retries + 1} attempts: {reason}")

    def _body(self, request: Request, response: Any, max_bytes: int | None) -> bytes:
        """The body, refused past `max_bytes` (by its Content-Length, or as it arrives)."""
        announced = response.headers.get("Content-Length", "")
        too_big = f"{_shown(request)}: larger than max_file_mb ({round((max_bytes or 0) / 2**20, 3):g} MB)"
        if max_bytes and announced.isdigit() and int(announced) > max_bytes:
            raise FetchError(too_big)
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if max_bytes and size > max_bytes:
                raise FetchError(too_big)
            chunks.append(chunk)
        return b"".join(chunks)


def retry_after(header: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (a number or an HTTP date), or None."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    import email.utils  # on the first Retry-After date, not at start-up

    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _said(response: Any) -> str:
    """What a site said about a refused request (sites explain a 4xx in a short text or JSON)."""
    text = (
        " ".join(response.text.split())[:200]
        if "html" not in response.headers.get("content-type", "")
        else ""
    )
    return f" ({text})" if text else ""


def _shown(request: Request) -> str:
    """The URL for messages, without credentials."""
    hidden = {"api_key", "password_hash", "login", "user_id"}
    params = "&".join(f"{k}={v}" for k, v in request.params.items() if k not in hidden)
    return f"{request.url}?{params}" if params else request.url
