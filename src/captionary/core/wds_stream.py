"""Reading WebDataset shards as a stream: open a shard wherever it is (a local path, an http(s) URL,
any fsspec URL such as `s3://...`, or `pipe:COMMAND`) and group its tar members into samples. One
reader for the `load_webdataset` source and the training loader."""

from __future__ import annotations

import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from captionary.core.locations import is_fsspec_url, is_http, url_to_fs
from captionary.core.wds_names import split_member_name

READ_ERRORS = (OSError, tarfile.TarError, EOFError, subprocess.SubprocessError)
"""What reading a broken, missing or cut-off shard raises (besides a remote file system's own errors)."""

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
        process = subprocess.Popen(url[5:], shell=True, stdout=subprocess.PIPE)
        assert process.stdout is not None
        try:
            yield process.stdout
        finally:
            process.stdout.close()
            if process.wait() != 0:
                raise subprocess.SubprocessError(f"{url[5:]!r} exited with {process.returncode}")
    elif is_http(url):
        with urllib.request.urlopen(url, timeout=timeout) as response:
            yield response
    elif is_fsspec_url(url):
        fs, path = url_to_fs(url)
        with fs.open(path, "rb") as f:
            yield f
    else:
        with open(url, "rb") as f:
            yield f


def tar_samples(stream: IO[bytes]) -> Iterator[Sample]:
    """Stream a tar: one sample per run of members sharing a key (`split_member_name`); members that
    belong to no sample are skipped."""
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        key, members, offsets = None, {}, {}
        for member in tar:
            split = split_member_name(member.name) if member.isfile() else None
            if split is None:
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
