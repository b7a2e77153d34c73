"""Output names from any source (folder names, manifest paths, shard keys, HF fields) stay inside the
output folder: normalised, never absolute, never `..`, and never resolving outside (symlinks included)."""

from __future__ import annotations

import os
import re

from captionary.errors import ItemError

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePath(ItemError):
    """An output name that would leave the output folder."""


def safe_relative(name: str) -> str:
    """`name` as a clean relative posix path (`a/./b//c` -> `a/b/c`), or UnsafePath when it is empty,
    absolute, has a `..` part (also between backslashes, a Windows reader's separator) or a NUL."""
    if "\0" in name:
        raise UnsafePath(f"unsafe output name {name!r}: contains a NUL character")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise UnsafePath(f"unsafe output name {name!r}: absolute paths are refused")
    parts = name.split("/")
    if ".." in (re.split(r"[/\\]", name) if "\\" in name else parts):
        raise UnsafePath(f"unsafe output name {name!r}: '..' would leave the output folder")
    parts = [part for part in parts if part not in ("", ".")]
    if not parts:
        raise UnsafePath(f"unsafe output name {name!r}: empty")
    return "/".join(parts)


def inside(root_real: str, path: str) -> bool:
    """True when `path`, with every symlink resolved, lies under the resolved root `root_real`."""
    return os.path.realpath(path).startswith(root_real + os.sep)
