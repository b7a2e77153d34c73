"""Downloading image URLs: concurrent, a limit per host, retries with backoff (honouring Retry-After
on 429/5xx). A failure is a reason string naming the HTTP status, never an exception.

Bounded, whatever the server does: `timeout` is how long any one step may wait (connecting, each
read), `deadline` the time one URL may take in all, attempts and backoff included (a server that
drips a byte at a time is cut off then), `max_size` the most bytes read (streamed; a larger body is
stopped at the limit), and a host whose connections
fail `host_failures` times in a row is given up for `host_cooldown` seconds: its remaining URLs fail
at once with the reason, so 10,000 URLs to a dead host take seconds, not hours (`circuit breaker`).
A malformed URL (`http://[::1`) is that URL's error.

`fetch_all` keeps at most `window` URLs between submitted and consumed, yields in the order given, and
runs an optional `then(url, result)` in the download thread (a source stores the body there, so
neither the bodies nor a million futures pile up when the consumer is slower than the network).
One urllib opener serves every request; each attempt's deadline guard reaches the connection it
opens through a thread-local.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import socket

# urllib.request, http.client and socket (20 ms of imports, with ssl and email) are imported when the
# first URL is fetched, not when the CLI starts: a cached run never downloads.

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
USER_AGENT = "captionary (+https://pypi.org/project/captionary/)"
MAX_DOWNLOAD_SIZE = 1 << 30
HOST_FAILURES = 10
HOST_COOLDOWN = 60.0
DEADLINE = 120.0
CHUNK = 1 << 16
WINDOW_PER_WORKER = 64
"""URLs submitted ahead of the consumer, per download thread: enough that one slow URL at the head
does not idle the others for long; few enough that a million URLs are not a million futures."""

R = TypeVar("R")


class Downloader:
    def __init__(
        self,
        *,
        workers: int = 16,
        per_host: int = 4,
        retries: int = 3,
        timeout: float = 30.0,
        deadline: float = DEADLINE,
        backoff: float = 1.0,
        max_wait: float = 60.0,
        max_size: int = MAX_DOWNLOAD_SIZE,
        host_failures: int = HOST_FAILURES,
        host_cooldown: float = HOST_COOLDOWN,
    ):
        self.workers = workers
        self.retries = retries
        self.timeout = timeout
        self.deadline = deadline
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_size = max_size
        self._hosts: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(per_host))
        self._breakers: dict[str, _HostBreaker] = defaultdict(
            lambda: _HostBreaker(host_failures, host_cooldown)
        )
        self._lock = threading.Lock()
        self._watchdog = _Watchdog()
        self._attempt = threading.local()  # .guard: the deadline guard of this thread's attempt
        self._opener: Any = None

    def fetch_all(
        self, urls: Iterable[str], then: Callable[[str, bytes | str], R] | None = None
    ) -> Iterator[tuple[str, R]]:
        """(url, bytes) or (url, reason), in the order given; with `then`, (url, then(url, result)),
        `then` run in the download thread. At most `workers * WINDOW_PER_WORKER` URLs are ahead of
        the consumer."""
        window = self.workers * WINDOW_PER_WORKER
        task = self.fetch if then is None else lambda url: then(url, self.fetch(url))
        pending: deque[tuple[str, Future]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="captionary-download") as pool:
            try:
                for url in urls:
                    pending.append((url, pool.submit(task, url)))
                    if len(pending) >= window:
                        url, future = pending.popleft()
                        yield url, future.result()
                while pending:
                    url, future = pending.popleft()
                    yield url, future.result()
            finally:  # the consumer stopped early (or failed): what has not started never will
                for _, future in pending:
                    future.cancel()

    def fetch(self, url: str) -> bytes | str:
        import http.client
        import urllib.error

        try:
            parts = urlsplit(url)
            host = parts.netloc
            if not parts.hostname:
                raise ValueError("no host name")
            parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
        except ValueError as exc:
            return f"malformed URL: {exc}"
        with self._lock:
            gate, breaker = self._hosts[host], self._breakers[host]
        deadline = 0.0
        reason, attempts = "", 0
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2**attempt
            with gate:
                if (refusal := breaker.refusal(host)) is not None:  # given up: fail at once
                    return refusal
                attempts += 1
                deadline = deadline or time.monotonic() + self.deadline  # from the first attempt on,
                # not while the URL waited for its turn at the host
                try:
                    data = self._get(url, deadline)
                    breaker.answered()
                    return data
                except urllib.error.HTTPError as exc:
                    breaker.answered()
                    reason = f"HTTP {exc.code} {exc.reason}"
                    if exc.code not in RETRY_STATUSES:
                        return f"download failed: {reason}"
                    wait = _retry_after(exc.headers.get("Retry-After"), wait)
                except _TooLarge as exc:
                    breaker.answered()
                    return f"download failed: {exc}"
                except http.client.InvalidURL as exc:  # e.g. a control character in the URL
                    return f"malformed URL: {exc}"
                except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                    reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
                    breaker.failed(reason)
                except ValueError as exc:  # http.client.InvalidURL, an IDNA host name that cannot be
                    return f"malformed URL: {exc}"  # encoded (after OSError: ssl errors are both)
            pause = min(wait, self.max_wait)
            if attempt == self.retries or time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        return f"download failed after {attempts} attempt{'s' if attempts != 1 else ''}: {reason}"

    def _get(self, url: str, deadline: float) -> bytes:
        """The body, read by `deadline` (monotonic) and at most `max_size` bytes."""
        import http.client
        import urllib.request

        guard = self._watchdog.guard(deadline)
        self._attempt.guard = guard
        try:
            if self._opener is None:  # one opener: building one per request cost 0.3 ms of CPU
                guarded_http, guarded_https = _guarded_handlers()
                self._opener = urllib.request.build_opener(
                    guarded_http(self._attempt), guarded_https(self._attempt)
                )
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            wait = max(0.001, min(self.timeout, deadline - time.monotonic()))
            with self._opener.open(request, timeout=wait) as response:
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > self.max_size:
                    raise _TooLarge(f"{announced} bytes announced, over the limit ({self.max_size})")
                length = getattr(response, "length", None)  # http.client's; None: chunked, unknown
                if length is not None and length <= self.max_size:
                    data = response.read()  # its length in one call: half the system calls of chunks
                else:  # no length (chunked, or until the connection closes): the limit as it streams
                    data = self._read_within_limit(response)
            if guard.expired:  # the watchdog shut the socket: what was read is cut off
                raise TimeoutError()
            return data
        except (OSError, http.client.HTTPException) as exc:
            if guard.expired:
                raise TimeoutError(
                    f"timed out: not complete within the {self.deadline:g} s deadline"
                ) from None
            raise exc
        finally:
            guard.done()
            self._attempt.guard = None

    def _read_within_limit(self, response: Any) -> bytes:
        chunks, size = [], 0
        while chunk := response.read(min(CHUNK, self.max_size + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_size:
                raise _TooLarge(f"more than {self.max_size} bytes (the limit); stopped reading")
        return b"".join(chunks)


class _TooLarge(Exception):
    """A body over the size limit."""


class _HostBreaker:
    """Consecutive connection failures of one host; at `limit`, its URLs fail at once for `cooldown`
    seconds, then one attempt probes the host again (a success closes the breaker)."""

    def __init__(self, limit: int, cooldown: float):
        self.limit = limit
        self.cooldown = cooldown
        self.failures = 0
        self.open_until = 0.0
        self.reason = ""
        self.lock = threading.Lock()

    def refusal(self, host: str) -> str | None:
        with self.lock:
            if self.limit <= 0 or self.failures < self.limit:
                return None
            now = time.monotonic()
            if now >= self.open_until:
                self.open_until = now + self.cooldown  # this attempt probes; the others still fail fast
                return None
            return (
                f"download failed: host {host} given up after {self.failures} connection failures in a "
                f"row (last: {self.reason}); retried on the next run"
            )

    def failed(self, reason: str) -> None:
        with self.lock:
            self.failures += 1
            self.reason = reason
            if self.failures >= self.limit:
                self.open_until = time.monotonic() + self.cooldown

    def answered(self) -> None:
        with self.lock:
            self.failures, self.open_until = 0, 0.0


class _Guard:
    """One attempt's sockets, shut down by the watchdog when its deadline passes."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.expired = False
        self.finished = False
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def expire(self) -> None:
        with self.lock:
            if self.finished:
                return
            self.expired = True
            for sock in self.sockets:
                _shutdown(sock)

    def done(self) -> None:
        with self.lock:
            self.finished = True
            self.sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    import socket

    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv; close() alone would not


class _Watchdog:
    """One daemon thread that expires guards at their deadlines; it exits after a second with none."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, _Guard]] = []
        self.order = itertools.count()
        self.condition = threading.Condition()
        self.thread: threading.Thread | None = None

    def guard(self, deadline: float) -> _Guard:
        guard = _Guard(deadline)
        with self.condition:
            earliest = not self.heap or deadline < self.heap[0][0]
            heapq.heappush(self.heap, (deadline, next(self.order), guard))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="captionary-download-deadlines")
                self.thread.daemon = True
                self.thread.start()
            elif earliest:  # it sleeps until the earliest deadline: wake it only for an earlier one
                self.condition.notify()
        return guard

    def _run(self) -> None:
        with self.condition:
            while True:
                now = time.monotonic()
                while self.heap and (self.heap[0][0] <= now or self.heap[0][2].finished):
                    heapq.heappop(self.heap)[2].expire()
                if not self.heap:
                    self.condition.wait(1.0)
                    if not self.heap:
                        self.thread = None
                        return
                    continue
                self.condition.wait(min(self.heap[0][0] - now, 1.0))  # each second: drop finished ones


_GUARDED: dict[type, type] = {}


def _guarded_connection(base: type) -> type:
    """`base` (HTTPConnection or HTTPSConnection) whose socket, once connected, the guard of the
    attempt running in this thread watches."""
    if base not in _GUARDED:

        class Guarded(base):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any, attempt: threading.local, **kwargs: Any):
                super().__init__(*args, **kwargs)
                self.guard: _Guard = attempt.guard

            def connect(self) -> None:
                super().connect()
                self.guard.watch(self.sock)

        _GUARDED[base] = Guarded
    return _GUARDED[base]


_HANDLERS: tuple[type, type] | None = None


def _guarded_handlers() -> tuple[type, type]:
    """urllib's HTTP and HTTPS handlers whose connections the running attempt's guard watches
    (built on first use)."""
    global _HANDLERS
    if _HANDLERS is None:
        import urllib.request

        class GuardedHTTP(urllib.request.HTTPHandler):
            def __init__(self, attempt: threading.local):
                super().__init__()
                self.attempt = attempt

            def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
                return super().do_open(_guarded_connection(http_class), req, attempt=self.attempt, **kwargs)

        class GuardedHTTPS(urllib.request.HTTPSHandler):
            def __init__(self, attempt: threading.local):
                super().__init__()
                self.attempt = attempt

            def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
                return super().do_open(_guarded_connection(http_class), req, attempt=self.attempt, **kwargs)

        _HANDLERS = (GuardedHTTP, GuardedHTTPS)
    return _HANDLERS


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header else default
    except ValueError:
        return default
