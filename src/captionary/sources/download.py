"""Downloading image URLs: concurrent, a limit per host, retries with backoff (honouring Retry-After
on 429/5xx), a timeout. A failure is a reason string naming the HTTP status, never an exception."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
USER_AGENT = "captionary (+https://pypi.org/project/captionary/)"


class Downloader:
    def __init__(
        self,
        *,
        workers: int = 16,
        per_host: int = 4,
        retries: int = 3,
        timeout: float = 30.0,
        backoff: float = 1.0,
        max_wait: float = 60.0,
    ):
        self.workers = workers
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_wait = max_wait
        self._hosts: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(per_host))
        self._lock = threading.Lock()

    def fetch_all(self, urls: Iterable[str]) -> Iterator[tuple[str, bytes | str]]:
        """(url, bytes) or (url, reason), in the order given."""
        urls = list(urls)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="captionary-download") as pool:
            yield from zip(urls, pool.map(self.fetch, urls))

    def fetch(self, url: str) -> bytes | str:
        with self._lock:
            gate = self._hosts[urlsplit(url).netloc]
        reason = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2**attempt
            with gate:
                try:
                    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
                    with urllib.request.urlopen(request, timeout=self.timeout) as response:
                        return response.read()
                except urllib.error.HTTPError as exc:
                    reason = f"HTTP {exc.code} {exc.reason}"
                    if exc.code not in RETRY_STATUSES:
                        return f"download failed: {reason}"
                    wait = _retry_after(exc.headers.get("Retry-After"), wait)
                except (urllib.error.URLError, TimeoutError, OSError) as exc:
                    reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
            if attempt < self.retries:
                time.sleep(min(wait, self.max_wait))
        return f"download failed after {self.retries + 1} attempts: {reason}"


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header else default
    except ValueError:
        return default
