"""Classes named by a short name or by the user's own import path: backends, image backends and
image-board sites are each a registry of `name -> "module:Class"` strings, imported on first use (so
`import captionary` stays light), and any other `"module:Class"` names a class of the user's own,
imported wherever the step runs (pool workers and Ray actors included)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TypeVar

from captionary.errors import ConfigError

T = TypeVar("T")


def plugin_class(name: str, known: Mapping[str, str], base: type[T], what: str, public: str) -> type[T]:
    """The class `name` stands for: a key of `known`, or `"module:Class"`; it must subclass `base`
    (`public`: how the user imports it). ConfigError naming close matches on a miss. `what` names the
    kind in messages ("backend", "site")."""
    target = known.get(name, name if ":" in name else None)
    if target is None:
        import difflib  # only for an error message

        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown {what} {name!r}{hint} ({what}s: {', '.join(known)}, or 'module:Class')")
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        if name in known:  # one of ours: a missing optional library says so itself
            raise
        raise ConfigError(f"{what} {name!r}: cannot import {attr!r} from {module!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{what} {name!r} is {cls!r}, not a {public} subclass")
    return cls
