"""How a WebDataset tar member's name splits into a sample key and an extension: one rule, the
`webdataset` library's (`base_plus_ext`), for every reader and writer of shards here.

The key is the member's path up to the first dot of its base name (dots in folders stay in the key);
the extension is everything after that dot (`a.seg.png` -> `a`, `seg.png`), lower-cased as the library
groups them. A member whose base name has no dot belongs to no sample; nor does anything under a
`__name__` meta path (the library skips those too). The pattern is the library's, verbatim, so odd
names (`dir/.hidden.jpg`) split exactly as `webdataset` splits them.
"""

from __future__ import annotations

import re

_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators.base_plus_ext
_META = re.compile(r"__[^/]*__($|/)")


def split_member_name(name: str) -> tuple[str, str] | None:
    """`(key, extension)` of a tar member name, or None when the member belongs to no sample."""
    if _META.match(name):
        return None
    match = _MEMBER.match(name)
    if match is None:
        return None
    return match.group(1), match.group(2).lower()
