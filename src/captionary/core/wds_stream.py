"""Reading WebDataset shards as a stream: open a shard wherever it is (a local path, an http(s) URL,
any fsspec URL such as `s3://...`, or `pipe:COMMAND`) and group its tar members into samples. One
reader for the `load_webdataset` source and the training loader."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from captionary.core.locations import is_fsspec_url, is_http, url_to_fs
from captionary.core.wds_names import split_member_name

if TYPE_CHECKING:
    import tarfile

# subprocess, tarfile and urllib.request are imported on first use: a cached run that never reads a
# shard does not pay for them at start-up.


def read_errors() -> tuple[type[BaseException], ...]:
    """What reading a broken, missing or cut-off shard raises (besides a remote file system's own errors)."""
    import subprocess
    import tarfile

    return (OSError, tarfile.TarError, EOFError, subprocess.SubprocessError)


Sample = tuple[str, dict[str, bytes], dict[str, int]]
"""(key, {extension: bytes}, {extension: offset of those bytes in the tar})."""


def is_local(url: str) -> bool:
    """The shard is a local file (not an http(s) or fsspec URL, nor a `pipe:` command)."""
    return not is_http(url) and not is_fsspec_url(url) and not url.startswith("pipe:")


@contextmanager
def open_shard(url: str, timeout: float = 60.0) -> Iterator[IO[bytes]]:
    """The shard's bytes as a stream; `timeout` (seconds) is for http(s). A `pipe:` command that
    exits with an error raises SubprocessError when the stream is closed."""
    if url.startswith("pipe:"):
        import subprocess

        process = subprocess.Popen(url[5:], shell=True, stdout=subprocess.PIPE)
        assert process.stdout is not None
        try:
            yield process.stdout
        finally:
            process.stdout.close()
            if process.wait() != 0:
                raise subprocess.SubprocessError(f"{url[5:]!r} exited with {process.returncode}")
    elif is_http(url):
        import urllib.request

        with urllib.request.urlopen(url, timeout=timeout) as response:
            yield response
    elif is_fsspec_url(url):
        fs, path = url_to_fs(url)
        with fs.open(path, "rb") as f:
            yield f
    else:
        with open(url, "rb") as f:
            yield f


def tar_samples(
    stream: IO[bytes],
    on_damage: Callable[[int, str], None] | None = None,
    max_member_size: int | None = None,
) -> Iterator[Sample]:
    """Stream a tar: one sample per run of members sharing a key (`split_member_name`); members that
    belong to no sample are skipped.

    A damaged stretch (a member header that fails its checksum, a header cut off) is read past, to the
    next valid header, as `tar -i` does, and described to `on_damage(byte offset, message)`, so the
    samples after it are still read; so is a member larger than `max_member_size` (not read).
    """
    import tarfile

    damage: list[tuple[int, str]] = []
    tarinfo = _checked_tarinfo(damage)
    with tarfile.open(fileobj=stream, mode="r|*", ignore_zeros=True, tarinfo=tarinfo) as tar:
        key, members, offsets = None, {}, {}
        seen = False
        for member in tar:
            seen = True
            _report(damage, on_damage)
            split = split_member_name(member.name) if member.isfile() else None
            if split is None:
                continue
            if max_member_size is not None and member.size > max_member_size:
                message = f"member {member.name!r}: {member.size} bytes, over max_file_size; not read"
                damage.append((member.offset, message))
                continue
            sample, extension = split
            if sample != key and members:
                yield key, members, offsets
                members, offsets = {}, {}
            key = sample
            handle = tar.extractfile(member)
            members[extension] = handle.read() if handle else b""
            offsets[extension] = member.offset_data
        if members:
            yield key, members, offsets
        if damage and not seen:
            raise tarfile.ReadError(f"not a tar archive ({damage[0][1]})")
        _report(damage, on_damage)


def _report(damage: list[tuple[int, str]], on_damage: Callable[[int, str], None] | None) -> None:
    if damage and on_damage is not None:
        for offset, message in damage:
            on_damage(offset, message)
    damage.clear()


def _checked_tarinfo(damage: list[tuple[int, str]]) -> type[tarfile.TarInfo]:
    """A TarInfo class that notes each header `TarFile.next` would skip (with `ignore_zeros`) or take
    as the end: a block failing its checksum (runs of them are one note), a header cut off."""
    import tarfile

    class CheckedTarInfo(tarfile.TarInfo):
        bad_since: int | None = None

        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
            offset = tar.offset
            try:
                info = super().fromtarfile(tar)
            except tarfile.HeaderError as exc:
                kind = type(exc).__name__
                if kind == "InvalidHeaderError":  # skipped, one block at a time, up to a valid header
                    if cls.bad_since is None:
                        cls.bad_since = offset
                    raise
                cls._close_bad_run(offset)
                if kind == "TruncatedHeaderError":
                    damage.append((offset, "the shard ends inside a member header: it is cut off"))
                raise
            cls._close_bad_run(offset)
            return info

        @classmethod
        def _close_bad_run(cls, offset: int) -> None:
            if cls.bad_since is not None:
                skipped = offset - cls.bad_since
                message = f"damaged tar data: {skipped} bytes without a valid member header were skipped"
                damage.append((cls.bad_since, message + " (a member there is lost)"))
                cls.bad_since = None

    return CheckedTarInfo
