"""Where a referenced blob's bytes live, when the workspace keeps a reference instead of a copy.

A location is a small JSON-able dict: `{"file": path, "offset": n, "size": n}` (a byte range of a
local file: a whole image file, or a member of an uncompressed tar shard), `{"url": url, "offset":
n, "size": n}` (the same range over HTTP, fetched with a Range request) or `{"fsspec": url, "offset":
n, "size": n}` (the same range of an object on any fsspec file system: `s3://`, `gs://`, `hf://`, ...;
credentials and endpoints come from the environment, as for the file system's own tools). Reading
checks the sha256, so a source file changed after the run is an item error, never wrong pixels.

`remote_fingerprint` names a remote file's version (ETag, modification time, size), so a source can
tell an unchanged remote shard from a changed one without reading it.
"""

from __future__ import annotations

import re
from typing import Any

from captionary.core.hashing import hash_bytes
from captionary.errors import ItemError

Location = dict[str, Any]
TIMEOUT = 60.0
UNKNOWN = "remote"  # the fingerprint of a remote file whose version cannot be told: read on every run
# What names a file's version in fsspec's `info`: s3 / gcs / azure ETags, gcs generations, the Hub's git
# blob id, modification times (local, sftp, ...)
VERSION_FIELDS = ("ETag", "etag", "generation", "md5Hash", "blob_id", "mtime", "LastModified", "updated")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def is_fsspec_url(url: str) -> bool:
    """A `scheme://` URL that is not http(s): opened through fsspec (`s3://`, `gs://`, `file://`, ...)."""
    return bool(_SCHEME.match(url)) and not is_http(url)


def url_to_fs(url: str) -> tuple[Any, str]:
    """The fsspec file system and path of `url` (fsspec and the scheme's package imported here)."""
    from captionary.core import optional

    fsspec = optional.require("fsspec", "remote")
    return fsspec.core.url_to_fs(url)


def remote_fingerprint(url: str, timeout: float = TIMEOUT) -> str:
    """The version of a remote file: `size:ETag` or `size:mtime` from fsspec's `info` or an HTTP HEAD,
    or `UNKNOWN` when the server tells neither (or refuses the HEAD). A missing fsspec file raises
    FileNotFoundError; the file system's own errors (credentials, ...) pass through."""
    if is_http(url):
        import urllib.request  # here, not at start-up: 20 ms that a local or cached run never needs

        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
                headers = r.headers
        except OSError:
            return UNKNOWN  # HEAD refused or failed: the GET that follows reports what is wrong
        version = headers.get("ETag") or headers.get("Last-Modified")
        return f"{headers.get('Content-Length', '')}:{version}" if version else UNKNOWN
    fs, path = url_to_fs(url)
    fs.invalidate_cache(path)  # a listing cached earlier in this process may predate a rewrite
    info = fs.info(path)
    version = next((info[k] for k in VERSION_FIELDS if info.get(k)), None)
    return f"{info.get('size', '')}:{version}" if version is not None else UNKNOWN


def read_location(location: Location, digest: str) -> bytes:
    """The bytes at `location`, checked against `digest`."""
    offset, size = int(location.get("offset", 0)), location.get("size")
    if "file" in location:
        where = location["file"]
        try:
            with open(where, "rb") as f:
                f.seek(offset)
                data = f.read() if size is None else f.read(int(size))
        except OSError as exc:
            raise ItemError(f"cannot read {where}: {exc.strerror or exc}") from None
    elif "url" in location:
        import urllib.request

        where = location["url"]
        request = urllib.request.Request(where)
        if size is not None:
            request.add_header("Range", f"bytes={offset}-{offset + int(size) - 1}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                data = response.read()
                if size is not None and response.status == 200:  # the server ignored Range
                    data = data[offset : offset + int(size)]
        except OSError as exc:
            raise ItemError(f"cannot fetch {where}: {exc}") from None
    elif "fsspec" in location:
        where = location["fsspec"]
        try:
            fs, path = url_to_fs(where)
            end = None if size is None else offset + int(size)
            data = fs.cat_file(path, start=offset, end=end)
        except FileNotFoundError:
            raise ItemError(f"cannot read {where}: not found") from None
        except Exception as exc:  # the file system's own: credentials, network
            raise ItemError(f"cannot read {where}: {type(exc).__name__}: {exc}") from None
    else:
        raise ItemError(f"unknown blob location {location!r}")
    if hash_bytes(data) != digest:
        raise ItemError(f"{where} changed since it was read (the bytes at offset {offset} are not the image)")
    return data
