"""Executors run a pipeline plan. They know step kinds, never particular steps."""

from __future__ import annotations

import importlib
from typing import Any

from captionary.errors import ConfigError

EXECUTORS: dict[str, str] = {
    "local": "captionary.executors.local:LocalExecutor",
    "ray": "captionary.executors.ray_executor:RayExecutor",
}
"""Executor name -> "module:class", imported only when chosen."""


def get_executor(name: str, **options: Any):
    try:
        target = EXECUTORS[name]
    except KeyError:
        import difflib  # only for an error message

        close = difflib.get_close_matches(name, EXECUTORS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown executor {name!r}{hint} (available: {', '.join(EXECUTORS)})") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(**options)
