"""The contract every stage follows. One driver thread calls these; heavy work runs elsewhere
(process pool, the batch thread, sink writer threads) and comes back through `poll`."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait

from captionary.core.item import Item


class Stage:
    max_pending: int = 64
    """Futures in flight before the driver waits for this stage (backpressure)."""

    def __init__(self) -> None:
        self.futures: list[Future] = []

    def push(self, items: list[Item]) -> list[Item]:
        """Take items; return those that are done now (cache hits, cheap work)."""
        raise NotImplementedError

    def poll(self, block: bool = False) -> list[Item]:
        """Items whose background work has finished (with `block`, wait for at least one)."""
        if block and self.futures:
            wait(self.futures, return_when=FIRST_COMPLETED)
        done: list[Future] = []
        pending: list[Future] = []
        for future in self.futures:  # one pass: a future finishing meanwhile lands in one list only
            (done if future.done() else pending).append(future)
        if not done:
            return []
        self.futures = pending
        out: list[Item] = []
        for future in done:
            out.extend(self.collect(future.result()))
        return out

    def collect(self, result) -> list[Item]:
        """Turn one finished future's result into items that go on."""
        raise NotImplementedError

    def finish(self) -> list[Item]:
        """No more input: wait for all background work and return what is left."""
        out: list[Item] = []
        while self.futures:
            out.extend(self.poll(block=True))
        return out

    def close(self, complete: bool) -> None:
        """Release resources (models, threads); `complete` is False when the run stopped early."""

    @property
    def pending(self) -> int:
        return len(self.futures)
