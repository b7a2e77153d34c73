"""Where a referenced blob's bytes live, when the workspace keeps a reference instead of a copy.

A location is a small JSON-able dict: `{"file": path, "offset": n, "size": n}` (a byte range of a
local file: a whole image file, or a member of an uncompressed tar shard) or `{"url": url, "offset":
n, "size": n}` (the same range over HTTP, fetched with a Range request). Reading checks the sha256, so
a source file changed after the run is an item error, never wrong pixels.
"""

from __future__ import annotations

import urllib.request
from typing import Any

from captionary.core.hashing import hash_bytes
from captionary.errors import ItemError

Location = dict[str, Any]
TIMEOUT = 60.0


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
    else:
        raise ItemError(f"unknown blob location {location!r}")
    if hash_bytes(data) != digest:
        raise ItemError(f"{where} changed since it was read (the bytes at offset {offset} are not the image)")
    return data
