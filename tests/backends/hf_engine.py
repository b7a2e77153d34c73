"""An engine with `LocalEngine`'s interface that runs a transformers model instead of vLLM, so the
engine processes of the vllm backend (start, requests with images across the pipe, results, errors,
shutdown) run for real on a CPU. Each text is tagged with the GPUs its process was given."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from captionary.backends import BackendConfig, Request, Result, make_backend
from captionary.backends.vllm import run_isolated


class TransformersEngine:
    def __init__(self, kwargs: dict[str, Any], chat_template: str | None = None, sampling: Any = None):
        self.backend = make_backend(BackendConfig("transformers", kwargs["model"], options={"device": "cpu"}))
        self.backend.load()
        self.gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        self.queued: list[Request] = []

    def submit(self, requests: Sequence[Request]) -> None:
        self.queued = list(requests)

    def collect(self) -> list[Result]:
        results = run_isolated(self.queued, self.backend.generate)
        for result in results:
            result.texts = [f"[gpu {self.gpus}] {text}" for text in result.texts]
        return results

    def close(self) -> None:
        self.backend.close()
