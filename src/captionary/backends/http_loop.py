"""One asyncio event loop in a thread of its own, holding one async HTTP client, for the API backends.

`concurrency` requests in flight cost one thread and a connection each, not a thread each: on 2 cores,
64 requests at a time of ~30 KB bodies against the benchmarks' stub server cost about 1.05 ms of CPU
per request through a thread pool on one sync httpx client, 0.53 ms through this loop with aiohttp's
transport (a stand-alone measurement; `benchmarks/caption.py` shows the step's rates).

The client is `httpx_aiohttp.HttpxAiohttpClient` (httpx's API over aiohttp's transport, as the
OpenAI SDK's aiohttp option uses it) when that package is installed, else `httpx.AsyncClient`; both
raise httpx's exceptions. Work that would block the loop (building a request, which may wait for its
image to be decoded; encoding images) runs in helper threads through `in_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, TypeVar

T = TypeVar("T")
Transport = Literal["auto", "aiohttp", "httpx"]


def aiohttp_transport_available() -> bool:
    try:
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


class HttpLoop:
    """An event loop thread with an async httpx-style client and `concurrency` slots."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        concurrency: int,
        transport: Transport = "auto",
    ):
        if transport == "aiohttp" and not aiohttp_transport_available():
            from captionary.errors import ConfigError

            raise ConfigError("transport: aiohttp needs httpx-aiohttp (pip install 'captionary[openai]')")
        wants_aiohttp = transport == "aiohttp" or (transport == "auto" and aiohttp_transport_available())
        self.transport = "aiohttp" if wants_aiohttp else "httpx"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="captionary-http", daemon=True)
        self._thread.start()
        # a request's builder may wait for its image to be decoded: one helper per slot never starves one
        self._helpers = ThreadPoolExecutor(concurrency, thread_name_prefix="captionary-http-prep")
        self.client: Any = self.call(self._open(base_url, headers, timeout, concurrency))
        self.slots: asyncio.Semaphore = self.call(_semaphore(concurrency))

    async def _open(self, base_url: str, headers: dict[str, str], timeout: float, concurrency: int) -> Any:
        import httpx

        options = {
            "base_url": base_url,
            "headers": headers,
            "timeout": httpx.Timeout(timeout),
            "limits": httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        }
        if self.transport == "aiohttp":
            from httpx_aiohttp import HttpxAiohttpClient

            return HttpxAiohttpClient(**options)
        return httpx.AsyncClient(**options)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coroutine` on the loop; its result (or exception) arrives in the Future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for it (from any thread but the loop's own)."""
        return self.submit(coroutine).result()

    async def in_thread(self, function: Callable[[], T]) -> T:
        """`function()` in a helper thread, awaited without blocking the loop."""
        return await self._loop.run_in_executor(self._helpers, function)

    def close(self) -> None:
        """Cancel what is in flight, close the client, stop the loop and its thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._helpers.shutdown(wait=True, cancel_futures=True)

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()


async def _semaphore(value: int) -> asyncio.Semaphore:
    return asyncio.Semaphore(value)  # made on the loop it is used on
