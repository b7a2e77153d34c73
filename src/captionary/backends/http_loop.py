"""One asyncio event loop in a thread of its own, holding one async HTTP client, for the API backends.

`concurrency` requests in flight cost a connection each, not a thread each: on 2 cores, 64 requests at
a time of ~30 KB bodies against the benchmarks' stub server cost about 1.05 ms of CPU per request
through a thread pool on one sync httpx client, 0.24 ms through this loop with aiohttp's client
(`http_clients.py`, which also holds the httpx one; `benchmarks/caption.py` shows the step's rates).

Work that would block the loop (building a request, which may wait for its image to be decoded;
encoding images) runs in helper threads through `in_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from captionary.backends.http_clients import AsyncClient, Transport, open_client, resolve

T = TypeVar("T")


class HttpLoop:
    """An event loop thread with an async HTTP client (`client.post`) and `concurrency` slots."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        concurrency: int,
        transport: Transport = "auto",
    ):
        self.transport = resolve(transport)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="captionary-http", daemon=True)
        self._thread.start()
        # a request's builder may wait for its image to be decoded: one helper per slot never starves one
        self._helpers = ThreadPoolExecutor(concurrency, thread_name_prefix="captionary-http-prep")
        self.client: AsyncClient = self.call(
            open_client(
                self.transport, base_url=base_url, headers=headers, timeout=timeout, connections=concurrency
            )
        )
        self.slots: asyncio.Semaphore = self.call(_semaphore(concurrency))

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
