"""The contract every stage follows. One driver thread calls these; heavy work runs elsewhere
(process pool, the batch thread, sink writer threads) and comes back through `poll`.

A stage learns of finished work by completion: each future it `track`s puts itself on the stage's
queue when done (a done-callback, in the thread that finished it), so `poll` costs the work that
finished, not a look at every future in flight, and `poll(block=True)` waits on that one queue rather
than on every pending future's lock."""

from __future__ import annotations

import functools
import itertools
import queue
from concurrent.futures import Future
from operator import itemgetter

from captionary.core.item import Item

_BY_SUBMISSION = itemgetter(0)


class Stage:
    max_pending: int = 64
    """Work in flight (futures, or the items they carry: see `track`) before the driver waits for this
    stage (backpressure)."""

    def __init__(self) -> None:
        self.in_flight = 0  # tracked work not yet collected, weighted
        self._finished: queue.SimpleQueue[tuple[int, int, Future]] = queue.SimpleQueue()
        self._order = itertools.count()

    def track(self, future: Future, weight: int = 1) -> None:
        """Collect `future`'s result through `poll` once it finishes; it counts `weight` (e.g. the items
        it carries) against `max_pending` until then."""
        self.in_flight += weight
        future.add_done_callback(functools.partial(self._on_done, next(self._order), weight))

    def _on_done(self, order: int, weight: int, future: Future) -> None:
        self._finished.put((order, weight, future))  # any thread; SimpleQueue.put never blocks

    def push(self, items: list[Item]) -> list[Item]:
        """Take items; return those that are done now (cache hits, cheap work)."""
        raise NotImplementedError

    def poll(self, block: bool = False) -> list[Item]:
        """Items whose background work has finished (with `block`, wait for at least one). Work that
        finished by now comes out in the order it was submitted (a future that raises raises here)."""
        finished = self._finished
        done = []
        if block and self.in_flight and finished.empty():
            done.append(finished.get())
        while not finished.empty():  # only this (the driver) thread takes from the queue
            done.append(finished.get_nowait())
        if not done:
            return []
        if len(done) > 1:
            done.sort(key=_BY_SUBMISSION)
        out: list[Item] = []
        for _, weight, future in done:
            self.in_flight -= weight
            out.extend(self.collect(future.result()))
        return out

    def collect(self, result) -> list[Item]:
        """Turn one finished future's result into items that go on."""
        raise NotImplementedError

    def finish(self) -> list[Item]:
        """No more input: wait for all background work and return what is left."""
        out: list[Item] = []
        while self.in_flight:
            out.extend(self.poll(block=True))
        return out

    def close(self, complete: bool) -> None:
        """Release resources (models, threads); `complete` is False when the run stopped early."""

    @property
    def pending(self) -> int:
        return self.in_flight
