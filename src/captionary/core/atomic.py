"""Atomic file writes (a temp file beside the target, renamed over it), and whole-file reads.

A reader sees the old file or the new one, never half of one; a killed writer leaves only a temp file,
named with TMP_PREFIX so its owner can clear it on the next start.

Both use bare descriptors (`os.open` / `os.read` / `os.write` / `os.fstat`), not Python file objects:
a file object costs three more system calls per file (an `isatty` ioctl, a seek, a stat), and on a
first run that reads two and writes three small files per image each call is a GIL hand-off between
threads.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import threading
from typing import BinaryIO

TMP_PREFIX = ".captionary-tmp-"
_counter = itertools.count()
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_pid = [os.getpid()]  # temp names carry the pid; getpid() is a system call, so it is kept (and renewed
if hasattr(os, "register_at_fork"):  # in a forked child)
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def write_atomic(
    target: str, data: bytes | bytearray | memoryview, tmp_folder: str | None = None, *, stat: bool = True
) -> os.stat_result | None:
    """Write `data` to `target` atomically; the temp file lives in `tmp_folder` (same file system).
    Returns the written file's stat (size and mtime as they are at `target`), or None without `stat`."""
    folder = tmp_folder or os.path.dirname(target)
    tmp = os.path.join(folder, f"{TMP_PREFIX}{_pid[0]}-{threading.get_ident()}-{next(_counter)}")
    fd = os.open(tmp, _FLAGS, 0o644)
    try:
        try:
            write_all(fd, data)
            written = os.fstat(fd) if stat else None
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk: name the file
            raise OSError(exc.errno, exc.strerror, target) from exc
        raise
    return written


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of `data` to the descriptor (a single write may take only part of it)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


_MAX_READ = 0x7FFFF000  # the most one read() returns on Linux
_CHUNK = 1 << 20


def read_all(fd: int, limit: int, expected: int) -> bytes:
    """Up to `limit` bytes of a regular file from its descriptor, to its end. The first read asks for
    `expected + 1` bytes (the size fstat gave), so a file that did not change costs one read and one
    buffer of its size; a read returning fewer bytes than asked (and than one read can return) is the
    end. A file that grew meanwhile is read on, 1 MiB at a time (never a buffer of `limit`)."""
    parts = []
    got = 0
    want = min(limit, expected + 1)
    while want > 0:
        part = os.read(fd, want)
        if not part:
            break
        parts.append(part)
        got += len(part)
        if len(part) < min(want, _MAX_READ):
            break
        want = min(limit - got, _CHUNK)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_file(path: str) -> bytes:
    """The bytes of a regular file, through a bare descriptor."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        return read_all(fd, 1 << 62, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def read_regular_file(path: str, max_size: int) -> bytes:
    """The bytes of a regular file (links followed), at most `max_size` of them. A FIFO, a device
    (`/dev/zero`), a socket or a folder is refused without blocking or reading: ValueError with the
    reason, as for a file over `max_size`; OSError for what the system refuses."""
    fd, size = _open_regular(path)
    try:
        if size > max_size:
            raise ValueError(f"{size} bytes, over max_file_size ({max_size} bytes)")
        # Bare reads of the file's size: a file object costs an isatty ioctl, a seek and a stat more
        # per file; a buffer of max_size + 1 allocated (and gave back) a gigabyte per file.
        data = read_all(fd, max_size + 1, size)  # (if it grew since fstat: on, within the limit)
    finally:
        os.close(fd)
    if len(data) > max_size:
        raise ValueError(f"grew over max_file_size ({max_size} bytes) while it was read")
    return data


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "FIFO", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device"}
    kinds |= {stat.S_ISSOCK: "socket", stat.S_ISDIR: "folder"}
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def open_regular(path: str) -> BinaryIO:
    """A regular file (links followed) opened for reading; a FIFO, a device, a socket or a folder is
    refused without blocking (ValueError naming what it is), as `read_regular_file` does."""
    return os.fdopen(_open_regular(path)[0], "rb")


def _open_regular(path: str) -> tuple[int, int]:
    """A descriptor of the regular file at `path` and its size, checked on the open descriptor (no
    race with a swapped name), opened without blocking: opening a FIFO would wait for a writer."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        mode = info.st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"not a regular file (a {_file_kind(mode)}); only regular files are read")
        os.set_blocking(fd, True)  # (local file systems ignore O_NONBLOCK on files; FUSE may not)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def remove_temp_files(folder: str, *, recursive: bool = False) -> None:
    """Delete temp files a killed writer left in `folder` (and its subfolders, if asked)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX):
                os.unlink(entry.path)
            elif recursive and entry.is_dir(follow_symlinks=False):
                remove_temp_files(entry.path, recursive=True)
