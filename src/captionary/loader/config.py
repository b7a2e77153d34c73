"""Settings as data: dataclasses built from dicts (or YAML) with errors that name the bad key."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from captionary.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], values: Mapping[str, Any] | T | None, section: str) -> T:
    """`cls(**values)`, refusing unknown keys with the valid ones listed; an instance passes through."""
    if values is None:
        return cls()
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{section}: expected a mapping of settings, got {type(values).__name__}")
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{section}: unknown setting(s) {unknown}; valid: {fields}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{section}: {exc}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A loader config file: top-level keys `image`, `caption`, `buckets` (each a mapping)."""
    from captionary.core import yaml_limits

    try:
        data = yaml_limits.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except ConfigError as exc:
        raise exc.at(line=None, file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with image / caption / buckets sections")
    return data
