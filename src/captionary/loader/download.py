"""Image URLs downloaded once into a cache folder (file name = sha256 of the URL)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from captionary.core.atomic import write_atomic


class DownloadCache:
    """`path(url)` is the local copy of `url`, downloaded on first use (retries, per-host limit)."""

    def __init__(self, folder: str | Path, *, timeout: float = 30.0, retries: int = 3):
        self.folder = Path(folder)
        self.timeout = timeout
        self.retries = retries

    def local(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()
        try:
            suffix = os.path.splitext(urlsplit(url).path)[1][:8]
        except ValueError:  # a malformed URL: its download fails with the reason
            suffix = ""
        return self.folder / digest[:2] / f"{digest}{suffix}"

    def path(self, url: str) -> Path:
        target = self.local(url)
        if not target.exists():
            self.fetch([url])
        return target

    def fetch(self, urls: Iterable[str]) -> None:
        """Download the URLs not in the cache yet, concurrently; raise naming the first that failed."""
        from captionary.sources.download import Downloader

        todo = [url for url in dict.fromkeys(urls) if not self.local(url).exists()]
        if not todo:
            return
        downloader = Downloader(retries=self.retries, timeout=self.timeout, backoff=0.5)
        failed: list[str] = []
        for url, result in downloader.fetch_all(todo):
            if isinstance(result, str):
                failed.append(f"{url}: {result}")
                continue
            target = self.local(url)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(str(target), result)
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise OSError(f"{failed[0]}{more}")
