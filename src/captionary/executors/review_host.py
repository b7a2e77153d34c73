"""How a human stage gets the review app it serves: an interface the review floor fills.

The executors stand below the review app, so they never import it: `captionary.review.serve`
registers its server here when imported (`import captionary` does), and a human stage asks for one
with `start_review_host` when its first undecided item arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from captionary.errors import ConfigError


class ReviewHost(Protocol):
    """A started review app: where to open it, and how to stop it."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


HostFactory = Callable[..., ReviewHost]
"""`factory(workspace_path, progress=callable, host=..., port=...) -> a started ReviewHost`."""
_factory: HostFactory | None = None


def set_review_host(factory: HostFactory) -> None:
    global _factory
    _factory = factory


def start_review_host(
    workspace: Path, progress: Callable[[], list[dict[str, Any]]], **options: Any
) -> ReviewHost:
    if _factory is None:
        raise ConfigError("a human step needs the review app: import captionary.review.serve first")
    return _factory(workspace, progress=progress, **options)
