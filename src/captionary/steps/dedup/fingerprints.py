"""Per-image fingerprints for deduplication: a 64-bit perceptual hash and a digest of the pixels.

The perceptual hash is imagehash's pHash (the low 8x8 DCT frequencies of a 32x32 greyscale copy,
each bit: above the median or not): the standard definition, so hashes agree with other tools that
use the library. It survives re-encoding, resizing and colour changes and, less well, small crops.
"""

from __future__ import annotations

import hashlib
import string
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from captionary.errors import ItemError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np
    from PIL.Image import Image

    from captionary.core.item import Item


def perceptual_hash(image: Image) -> str:
    """The 64-bit pHash of `image` as 16 hex digits."""
    import imagehash

    return str(imagehash.phash(image, hash_size=8))


def pixel_digest(image: Image) -> str:
    """A digest of the decoded pixels (mode, size, values): equal for the same image in any file."""
    digest = hashlib.blake2b(f"{image.mode}:{image.width}x{image.height}:".encode(), digest_size=20)
    digest.update(image.tobytes())
    return digest.hexdigest()


def hash_array(values: Sequence[str]) -> np.ndarray:
    """Hex hashes as a uint64 array (for the Hamming search)."""
    import numpy as np

    return np.fromiter((int(v, 16) for v in values), dtype=np.uint64, count=len(values))


HEX = set(string.hexdigits)


def hash_codes(items: Sequence[Item], hashes: Sequence[Any], prop: str = "phash") -> np.ndarray:
    """Each item's hash (16 hex digits, from `prop` or computed) as a uint64, checked."""
    for item, value in zip(items, hashes):
        if not isinstance(value, str) or len(value) != 16 or not set(value) <= HEX:
            raise ItemError(f"{item.name}: property {prop!r} is {value!r}, not 16 hex digits")
    return hash_array(hashes)


def per_item(
    items: Sequence[Item], prop: str | None, compute: Callable[[Image], Any], threads: int
) -> list[Any]:
    """`item[prop]` where set, else `compute(item.image)`, decoded in `threads` threads (Pillow
    releases the GIL while decoding): for values no earlier step stored per image."""
    values = [item.get(prop) if prop else None for item in items]
    missing = [i for i, value in enumerate(values) if value is None]
    if missing:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            # decode through a copy: the item must not keep its pixels (a million of them would not fit)
            for i, value in zip(missing, pool.map(lambda i: compute(items[i].evolve().image), missing)):
                values[i] = value
    return values
