"""Writing output files the way every sink must: atomically, only when changed, never outside the output
folder, never touching a file the sink did not write itself, and never overwriting or deleting one a
person edited since (unless asked to). The `outputs` table remembers what each sink wrote (digest, size,
mtime): a file whose size or mtime moved since was changed by someone else."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from captionary.core.atomic import remove_temp_files, write_atomic
from captionary.sinks.paths import UnsafePath, inside

log = logging.getLogger("captionary")

UPSERT_OUTPUT = "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?, ?, ?, ?)"
DELETE_OUTPUT = "DELETE FROM outputs WHERE sink = ? AND path = ?"


class NotOurs(Exception):
    """The target exists with other content and no record says this sink wrote it."""


class EditedByHand(NotOurs):
    """The target is a file this sink wrote, changed on disk since (a person's edit)."""


class OutputFiles:
    """`outside_ok`: paths (manifests the format itself names, like kohya_json's `../out.json`) that may
    lie outside the root; item files never may."""

    def __init__(
        self,
        ctx: Any,
        sink_id: str,
        root: Path,
        *,
        overwrite_edited: bool = False,
        outside_ok: frozenset[str] = frozenset(),
    ):
        self.ctx = ctx
        self.sink_id = sink_id
        self.root = root
        self.root_prefix = str(root) + os.sep
        self.overwrite_edited = overwrite_edited
        self.outside_ok = outside_ok
        root.mkdir(parents=True, exist_ok=True)
        self.root_real = os.path.realpath(root)
        self.kept_edited: list[str] = []  # stale files left in place because a person changed them
        self.records: dict[str, tuple[str | None, str, int, int]] = {
            path: (item, digest, size, mtime)
            for path, item, digest, size, mtime in ctx.ws.query(
                "SELECT path, item, digest, size, mtime_ns FROM outputs WHERE sink = ?", (sink_id,)
            )
        }
        self.touched: set[str] = set()
        self.folders: set[str] = set()  # output folders known to exist
        self.folder_inside: dict[str, bool] = {}  # resolved once per run: does the folder lie inside?
        # temp files are left only by a killed run, of this workspace or (a sink with no records yet
        # here) another: the listing of the whole output folder (20 ms for 36,000 files) only then
        if getattr(ctx, "after_kill", True) or not self.records:
            self._remove_temp_files()

    def claimed_names(self) -> dict[str, str]:
        """Output stem (path without extension) -> item id, for names this sink already gave out."""
        return {path.rpartition(".")[0]: item for path, (item, *_) in self.records.items() if item}

    def unchanged(self, relative: str, digest: str) -> bool:
        """True if this sink wrote `digest` to `relative` and the file is still as it left it."""
        record = self.records.get(relative)
        if record is None or record[1] != digest:
            return False
        try:
            st = os.stat(self.root_prefix + relative)
        except FileNotFoundError:
            return False
        if (record[2], record[3]) != (st.st_size, st.st_mtime_ns):
            return False
        self.touched.add(relative)
        return True

    def write(self, relative: str, item_id: str | None, digest: str, content: bytes | Any) -> bool:
        """Make `root/relative` hold `content` (bytes, or a callable returning bytes).

        Returns False if the file already holds it (digest recorded and file unchanged on disk).
        """
        if self.unchanged(relative, digest):
            return False
        st = self.check_inside(relative)
        self.touched.add(relative)
        target = self.root_prefix + relative  # a string: pathlib cost ~5 us a file on this hot path
        record = self.records.get(relative)
        data = content() if callable(content) else content
        written = None
        if st is not None and record is None:
            if _sha(Path(target).read_bytes()) != _sha(data):
                raise NotOurs(
                    f"{target} exists and was not written by captionary; move it or choose "
                    f"another output folder"
                )
        elif st is not None and record is not None and _moved(record, st):
            if _sha(Path(target).read_bytes()) != _sha(data):
                if not self.overwrite_edited:
                    raise EditedByHand(
                        f"{target} was changed since captionary wrote it: left as it is (save: "
                        f"{{overwrite_edited: true}} or --overwrite-edited replaces it)"
                    )
                written = self._write(target, data)
        elif st is None or record is None or _sha(Path(target).read_bytes()) != _sha(data):
            written = self._write(target, data)
        st = written or os.stat(target)
        self.records[relative] = (item_id, digest, st.st_size, st.st_mtime_ns)
        self.ctx.writer.write(
            UPSERT_OUTPUT, (self.sink_id, relative, item_id, digest, st.st_size, st.st_mtime_ns)
        )
        return True

    def remove_stale(self, keep_items: Iterable[str]) -> list[str]:
        """Delete files this sink wrote earlier that this run did not produce (never other files)."""
        keep = set(keep_items)
        removed = []
        for relative, (item, *_) in list(self.records.items()):
            if relative in self.touched or (item is not None and item in keep):
                continue
            target = self.root / relative
            record = self.records.pop(relative)
            if self.is_inside(relative) and not self._edited(record, target):
                target.unlink(missing_ok=True)
            self.ctx.writer.write(DELETE_OUTPUT, (self.sink_id, relative))
            removed.append(relative)
        return removed

    def is_inside(self, relative: str) -> bool:
        if relative in self.outside_ok:
            return True
        try:
            self._inside(relative)
        except UnsafePath:
            return False
        return True

    def check_inside(self, relative: str) -> os.stat_result | None:
        """Refuse a path that resolves outside the root (symlinks followed); else the target's stat
        (links followed), or None when it does not exist."""
        if relative in self.outside_ok:
            try:
                return (self.root / relative).stat()
            except FileNotFoundError:
                return None
        return self._inside(relative)

    def _inside(self, relative: str) -> os.stat_result | None:
        """Where `relative` leads, checked the way `inside` (realpath) does, without resolving every
        path component for every file: a folder's resolved place is looked up once per run (a real
        folder only, never one still to be made), then the file itself costs one `lstat`, which also
        tells whether it exists; a symlinked file is resolved in full."""
        path = self.root_prefix + relative
        folder = os.path.dirname(path)
        verdict = self.folder_inside.get(folder)
        if verdict is None:
            real = os.path.realpath(folder)
            verdict = real == self.root_real or real.startswith(self.root_real + os.sep)
            if os.path.isdir(folder) and not os.path.islink(folder):
                self.folder_inside[folder] = verdict
        if verdict:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return None
            if not stat.S_ISLNK(st.st_mode):
                return st
            if inside(self.root_real, path):
                try:
                    return os.stat(path)
                except FileNotFoundError:  # a dangling link inside: written over
                    return None
        raise UnsafePath(
            f"{self.root / relative} resolves outside the output folder {self.root} (through a "
            f"symlink?): refused"
        )

    def _edited(self, record: tuple[str | None, str, int, int], target: Path) -> bool:
        """A stale file a person changed since we wrote it: kept (and reported) unless overwrite_edited."""
        try:
            st = target.stat()
        except FileNotFoundError:
            return False
        if self.overwrite_edited or not _moved(record, st):
            return False
        self.kept_edited.append(str(target))
        log.warning("%s was changed since captionary wrote it: kept, though its item is gone", target)
        return True

    def _write(self, target: str, data: bytes) -> os.stat_result | None:
        folder = os.path.dirname(target)
        if folder not in self.folders:
            os.makedirs(folder, exist_ok=True)
            self.folders.add(folder)
        return write_atomic(target, data)

    def _remove_temp_files(self) -> None:
        """Temp files a killed run left (they are this sink's own, by their name)."""
        remove_temp_files(str(self.root), recursive=True)


def _moved(record: tuple[str | None, str, int, int], st: os.stat_result) -> bool:
    return (record[2], record[3]) != (st.st_size, st.st_mtime_ns)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
