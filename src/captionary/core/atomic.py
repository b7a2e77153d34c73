"""Atomic file writes: write a temp file beside the target, then rename it over the target.

A reader sees the old file or the new one, never half of one; a killed writer leaves only a temp file,
named with TMP_PREFIX so its owner can clear it on the next start.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading

TMP_PREFIX = ".captionary-tmp-"
_counter = itertools.count()
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def write_atomic(target: str, data: bytes, tmp_folder: str | None = None) -> None:
    """Write `data` to `target` atomically; the temp file lives in `tmp_folder` (same file system)."""
    folder = tmp_folder or os.path.dirname(target)
    tmp = os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{next(_counter)}")
    fd = os.open(tmp, _FLAGS, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk: name the file
            raise OSError(exc.errno, exc.strerror, target) from exc
        raise


def remove_temp_files(folder: str, *, recursive: bool = False) -> None:
    """Delete temp files a killed writer left in `folder` (and its subfolders, if asked)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX):
                os.unlink(entry.path)
            elif recursive and entry.is_dir(follow_symlinks=False):
                remove_temp_files(entry.path, recursive=True)
