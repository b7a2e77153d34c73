"""Model runtimes behind one narrow interface (see `base.py`): openai, transformers, vllm.

Each backend module imports its heavy libraries inside its methods; this package imports none.
"""

from __future__ import annotations

from captionary.backends.base import (
    BACKENDS,
    Backend,
    BackendConfig,
    GenerationParams,
    OutOfMemory,
    Preset,
    Request,
    Result,
    backend_class,
    cache_identity,
    find_preset,
    is_out_of_memory,
    make_backend,
    model_label,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendConfig",
    "GenerationParams",
    "OutOfMemory",
    "Preset",
    "Request",
    "Result",
    "backend_class",
    "cache_identity",
    "find_preset",
    "is_out_of_memory",
    "make_backend",
    "model_label",
]
