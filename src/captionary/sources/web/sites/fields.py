"""Reading a site's loosely typed JSON fields."""

from __future__ import annotations

from typing import Any


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def words(value: Any) -> list[str]:
    """A space-separated tag string as a list."""
    return value.split() if isinstance(value, str) else []


def extension(url: str | None) -> str | None:
    if not url:
        return None
    name = url.split("?", 1)[0].rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else None


def records(answer: Any, key: str | None = None) -> list[dict]:
    """The post records of an answer: a list, or the list under `key`; ValueError otherwise."""
    if key is not None and isinstance(answer, dict):
        answer = answer.get(key, [])
    if answer in (None, ""):
        return []  # some sites answer an empty body or `""` for no results
    if not isinstance(answer, list) or not all(isinstance(r, dict) for r in answer):
        where = f" under {key!r}" if key else ""
        raise ValueError(f"expected a list of posts{where}, got {type(answer).__name__}")
    return answer
