"""Content hashes (blob names, item ids) and cache keys."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def hash_bytes(data: bytes) -> str:
    """The content hash used for blob names and item ids (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()


def _encode_extra(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


_OPTIONS = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False, "allow_nan": False}
_CANONICAL = json.JSONEncoder(**_OPTIONS, default=_encode_extra)
# The C encoder, built once: json.dumps(**options) builds a new one on every call, and this runs per
# item per step on the cache's hot path.
_FAST = (
    json.encoder.c_make_encoder(
        None, _encode_extra, json.encoder.encode_basestring, None, ":", ",", True, False, False
    )
    if json.encoder.c_make_encoder is not None
    else None
)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    if _FAST is not None:
        return "".join(_FAST(value, 0))
    return _CANONICAL.encode(value)


def step_prefix(name: str, version: int | str, params: dict[str, Any], model: str | None) -> bytes:
    """The part of a cache key fixed for one configured step: name, version, params, model."""
    return hashlib.blake2b(
        canonical_json([name, str(version), params, model]).encode(), digest_size=16
    ).digest()


KEY_PREFIX = 8
"""Bytes of the step prefix that lead every cache key, so one step's results sit together in the
table (a configured step's results can be read in one range scan)."""


def cache_key(prefix: bytes, fingerprint: str, reads: str = "") -> bytes:
    """Key of one step result: the step's prefix plus H(input fingerprint: image hash + read values)."""
    h = hashlib.blake2b(prefix, digest_size=16)
    h.update(fingerprint.encode())
    if reads:
        h.update(reads.encode())
    return prefix[:KEY_PREFIX] + h.digest()
