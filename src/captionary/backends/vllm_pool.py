"""vLLM engines in child processes: one per group of GPUs (data parallelism), each started with
`spawn` and `CUDA_VISIBLE_DEVICES` set to its group before vLLM is imported.

The parent sends a list of requests (prompts, PIL images, settings: all picklable) and receives the
results; the worker isolates rejected requests itself, so one bad image costs one retry there, not a
round trip per split.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import time
from collections.abc import Sequence
from typing import Any

from captionary.backends.base import OutOfMemory, Request, Result

START_TIMEOUT = 1800.0
"""Seconds an engine may take to load (large checkpoints from a cold disk take minutes)."""


class EngineProcess:
    """A `LocalEngine` (or any class with its interface, named "module:Class") in a child process
    bound to `gpus`."""

    def __init__(
        self,
        gpus: Sequence[str],
        kwargs: dict[str, Any],
        chat_template: str | None = None,
        sampling: dict[str, Any] | None = None,
        engine: str = "captionary.backends.vllm:LocalEngine",
    ):
        context = multiprocessing.get_context("spawn")
        self.gpus = ",".join(gpus)
        self.inbox: Any = context.Queue()
        self.outbox: Any = context.Queue()
        self.process = context.Process(
            target=serve,
            args=(self.gpus, kwargs, chat_template, sampling, engine, self.inbox, self.outbox),
            name=f"captionary-vllm-{self.gpus}",
            daemon=False,  # vLLM starts processes of its own, which a daemon may not
        )
        self.process.start()

    def wait_ready(self) -> None:
        self._answer(START_TIMEOUT)

    def submit(self, requests: Sequence[Request]) -> None:
        self.inbox.put(list(requests))

    def collect(self) -> list[Result]:
        return self._answer(None)

    def _answer(self, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                kind, value = self.outbox.get(timeout=5.0)
                break
            except queue.Empty:
                if not self.process.is_alive():
                    raise RuntimeError(
                        f"the vLLM engine on GPU(s) {self.gpus} exited (code {self.process.exitcode})"
                    ) from None
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the vLLM engine on GPU(s) {self.gpus} did not start in {timeout:.0f} s"
                    ) from None
        if kind == "oom":
            raise OutOfMemory(value)
        if kind == "error":
            raise RuntimeError(f"vLLM engine on GPU(s) {self.gpus}: {value}")
        return value

    def close(self) -> None:
        if self.process.is_alive():
            self.inbox.put(None)
            self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)


def serve(
    gpus: str,
    kwargs: dict[str, Any],
    chat_template: str | None,
    sampling: dict[str, Any] | None,
    engine_class: str,
    inbox: Any,
    outbox: Any,
) -> None:
    """The child's loop: load the engine, then answer each list of requests until told to stop."""
    if gpus:  # none visible: leave the environment alone and let vLLM say what it misses
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    from captionary.backends.base import is_out_of_memory

    try:
        module, _, name = engine_class.partition(":")
        engine = getattr(importlib.import_module(module), name)(kwargs, chat_template, sampling)
    except Exception as exc:
        outbox.put(("error", f"could not start: {type(exc).__name__}: {exc}"))
        return
    outbox.put(("ready", None))
    while (requests := _next(inbox)) is not None:
        try:
            engine.submit(requests)
            outbox.put(("ok", engine.collect()))
        except Exception as exc:
            kind = "oom" if is_out_of_memory(exc) else "error"
            outbox.put((kind, f"{type(exc).__name__}: {exc}"))
    engine.close()


def _next(inbox: Any) -> Any:
    """The next job, or None when told to stop or when the parent process is gone."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            return inbox.get(timeout=5.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return None
        except (EOFError, OSError):
            return None
