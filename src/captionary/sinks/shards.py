"""WebDataset shards written as items arrive: `shard-000000.tar` holding `key.jpg`, `key.txt`, `key.json`.

A tar cannot change a member in place, so incremental writing works per shard:

- every sample written is recorded (`outputs` rows `shard-000003.tar#key` with the item and a digest of
  its members), and every finished shard (`shard-000003.tar` with its size and mtime);
- a re-run skips samples recorded unchanged in an intact shard; new or changed samples go to new
  shards, numbered after the last one;
- at the end of a complete run, a shard holding samples this run no longer produces is rewritten with
  only its live members (streamed member by member), or deleted when none is left.

The open shard is written to a temp file and renamed when full, so a killed run leaves whole shards
only, and the samples of the unfinished shard are simply written again next time.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from captionary.core.atomic import TMP_PREFIX, remove_temp_files
from captionary.core.wds_names import split_member_name
from captionary.sinks.files import DELETE_OUTPUT, UPSERT_OUTPUT, NotOurs

if TYPE_CHECKING:
    import tarfile  # imported where a shard is written: not at start-up

log = logging.getLogger("captionary")
SHARD_PATTERN = re.compile(r"^shard-(\d{6})\.tar$")


@dataclass(frozen=True, slots=True)
class Member:
    extension: str  # ".jpg", ".txt", ".json"
    content: Callable[[], bytes]


@dataclass(slots=True)
class SampleRecord:
    shard: str
    key: str
    item: str
    digest: str


def sample_key(stem: str) -> str:
    """A WebDataset key for an item name: a key ends at the first dot of a member's base name, so dots
    become underscores; a name readers would skip as metadata (`__x__`) gets a prefix."""
    folder, _, name = stem.rpartition("/")
    name = name.replace(".", "_")
    key = f"{folder}/{name}" if folder else name
    return key if split_member_name(f"{key}.txt") == (key, "txt") else f"sample{key}"


class ShardWriter:
    """Writes samples into numbered tar shards under `root`, incrementally across runs."""

    def __init__(self, ctx: Any, sink_id: str, root: Path, shard_size: int, overwrite_edited: bool = False):
        self.ctx = ctx
        self.overwrite_edited = overwrite_edited
        self.sink_id = sink_id
        self.root = root
        self.shard_size = shard_size
        root.mkdir(parents=True, exist_ok=True)
        remove_temp_files(str(root))
        self.shards: dict[str, tuple[int, int]] = {}  # shard -> (size, mtime_ns) as last written
        self.samples: dict[str, SampleRecord] = {}  # item -> where its current sample is
        self.by_shard: dict[str, list[SampleRecord]] = {}  # every sample each shard holds
        for path, item, digest, size, mtime in ctx.ws.query(
            "SELECT path, item, digest, size, mtime_ns FROM outputs WHERE sink = ?", (sink_id,)
        ):
            shard, sep, key = path.partition("#")
            if sep:
                record = SampleRecord(shard, key, item, digest)
                self.samples[item] = record
                self.by_shard.setdefault(shard, []).append(record)
            else:
                self.shards[shard] = (size, mtime)
        self.intact = {shard for shard in self.shards if self._on_disk_as_recorded(shard)}
        self.edited = {s for s in self.shards if s not in self.intact and (root / s).exists()}
        for records in self.by_shard.values():  # an item's sample in an intact shard is the one that counts
            for record in records:
                if record.shard in self.intact:
                    self.samples[record.item] = record
        self.kept_edited: list[str] = []  # shards a person changed: left in place, reported
        self.live: set[str] = set()  # items whose recorded sample this run confirmed or wrote
        self.lock = threading.Lock()
        self.open_tar: tarfile.TarFile | None = None
        self.open_file: IO[bytes] | None = None
        self.open_name = ""
        self.open_records: list[SampleRecord] = []  # the samples in the open shard
        numbers = [int(m.group(1)) for s in self.shards if (m := SHARD_PATTERN.match(s))]
        self.next_number = max(numbers, default=-1) + 1
        foreign = sorted(
            p.name for p in root.iterdir() if SHARD_PATTERN.match(p.name) and p.name not in self.shards
        )
        self.conflict = (
            f"{root / foreign[0]} exists and was not written by captionary; move it or choose another "
            f"output folder"
            if foreign
            else None
        )

    def claimed_keys(self) -> dict[str, str]:
        """Sample key -> item id, for keys given out in earlier runs (so names stay stable)."""
        return {record.key: record.item for record in self.samples.values()}

    def unchanged(self, item_id: str, digest: str) -> bool:
        """True if the item's sample, with these contents, sits in a shard that is as we left it."""
        record = self.samples.get(item_id)
        if record is None or record.digest != digest or record.shard not in self.intact:
            return False
        with self.lock:
            self.live.add(item_id)
        return True

    def write(self, item_id: str, key: str, digest: str, members: Iterable[Member]) -> None:
        """Append one sample to the open shard (thread-safe). The members' bytes are produced first, in
        the calling thread, so several writer threads read (a remote blob store, a referenced shard) and
        encode at once; only the append to the tar is one at a time."""
        if self.conflict:
            raise NotOurs(self.conflict)
        contents = [(key + member.extension, member.content()) for member in members]
        with self.lock:
            if self.open_tar is None:
                self._open_next()
            assert self.open_tar is not None
            for name, data in contents:
                _add(self.open_tar, name, data)
            record = SampleRecord(self.open_name, key, item_id, digest)
            self.open_records.append(record)
            self.by_shard.setdefault(self.open_name, []).append(record)
            self.samples[item_id] = record
            self.live.add(item_id)
            if len(self.open_records) >= self.shard_size:
                self._close_open()

    def close(self, complete: bool, keep_items: Iterable[str] = ()) -> None:
        """Finish the open shard; after a complete run, drop samples this run did not produce."""
        with self.lock:
            if self.open_tar is not None:
                self._close_open()
            if complete:
                self._compact(self.live | set(keep_items))

    def _open_next(self) -> None:
        name = f"shard-{self.next_number:06d}.tar"
        self.next_number += 1
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{name}"
        import tarfile

        self.open_file = open(tmp, "wb")  # noqa: SIM115 (closed in _close_open)
        self.open_tar = tarfile.open(fileobj=self.open_file, mode="w")  # noqa: SIM115
        self.open_name = name
        self.open_records = []

    def _close_open(self) -> None:
        """Record the shard and its samples (committed), then rename it into place: a kill between
        the two leaves a record without a file, whose samples are simply written again."""
        assert self.open_tar is not None and self.open_file is not None
        self.open_tar.close()
        self.open_file.close()
        self._record_shard(self.open_name, Path(self.open_file.name))
        for record in self.open_records:
            self._record_sample(record)
        self.ctx.writer.sync()
        os.replace(self.open_file.name, self.root / self.open_name)  # keeps size and mtime
        self.open_tar = self.open_file = None

    def _compact(self, keep: set[str]) -> None:
        """Rewrite or delete shards holding samples that are stale: of items gone, or written anew
        elsewhere because they changed (a shard changed on disk had all its samples written anew)."""
        for shard in sorted(self.shards):
            records = self.by_shard.get(shard, [])
            if shard in self.edited and not self.overwrite_edited:
                self._leave_edited(shard)
                continue
            live = [r for r in records if r.item in keep and self.samples.get(r.item) is r]
            if len(live) == len(records) and records:
                continue
            for record in records:
                if record not in live:
                    if self.samples.get(record.item) is record:
                        del self.samples[record.item]
                    self.ctx.writer.write(DELETE_OUTPUT, (self.sink_id, f"{shard}#{record.key}"))
            self.by_shard[shard] = live
            if live:
                self._rewrite(shard, {r.key for r in live})
            else:
                (self.root / shard).unlink(missing_ok=True)
                del self.shards[shard]
                self.ctx.writer.write(DELETE_OUTPUT, (self.sink_id, shard))

    def _leave_edited(self, shard: str) -> None:
        """A shard changed on disk since we wrote it: left as it is and reported (its samples were written
        again in new shards); `overwrite_edited` lets a later run compact it like any other."""
        self.kept_edited.append(str(self.root / shard))
        log.warning(
            "%s was changed since captionary wrote it: left as it is (its samples are written again in new "
            "shards); move it away, or set save: {overwrite_edited: true} to let captionary replace it",
            self.root / shard,
        )

    def _rewrite(self, shard: str, keys: set[str]) -> None:
        """Copy the members of `keys` from `shard` into a new file of the same name, one at a time."""
        source = self.root / shard
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{shard}"
        import tarfile

        with tarfile.open(source, "r") as old, tarfile.open(tmp, "w") as new:
            for info in old:
                split = split_member_name(info.name)
                if info.isfile() and split is not None and split[0] in keys:
                    new.addfile(info, old.extractfile(info))
        self._record_shard(shard, tmp)
        self.ctx.writer.sync()
        os.replace(tmp, source)

    def _record_shard(self, shard: str, file: Path) -> None:
        st = file.stat()
        self.shards[shard] = (st.st_size, st.st_mtime_ns)
        self.intact.add(shard)
        self.ctx.writer.write(UPSERT_OUTPUT, (self.sink_id, shard, None, "shard", st.st_size, st.st_mtime_ns))

    def _record_sample(self, record: SampleRecord) -> None:
        self.ctx.writer.write(
            UPSERT_OUTPUT, (self.sink_id, f"{record.shard}#{record.key}", record.item, record.digest, 0, 0)
        )

    def _on_disk_as_recorded(self, shard: str) -> bool:
        try:
            st = (self.root / shard).stat()
        except FileNotFoundError:
            return False
        return (st.st_size, st.st_mtime_ns) == self.shards[shard]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0  # the same samples make the same bytes
    tar.addfile(info, io.BytesIO(data))
