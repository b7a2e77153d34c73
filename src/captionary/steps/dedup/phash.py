"""`phash`: each image's 64-bit perceptual hash, cached per image (what `dedup` compares)."""

from __future__ import annotations

from typing import Any, ClassVar

from captionary.core.item import Item
from captionary.pipeline.step import Map
from captionary.steps.dedup.fingerprints import perceptual_hash


class PerceptualHash(Map):
    """Store the image's 64-bit pHash as 16 hex digits in `phash` (runs in the process pool)."""

    name: ClassVar[str] = "phash"
    writes: ClassVar[tuple[str, ...]] = ("phash",)
    parallel: ClassVar[bool] = True

    def validate(self) -> None:
        from captionary.core.optional import require

        require("imagehash", "dedup")

    def apply(self, item: Item) -> dict[str, Any]:
        return {"phash": perceptual_hash(item.image)}


class WindowHashes(Map):
    """Store pHashes of the image's crop and mirror windows in `phash_windows` (for dedup: robust)."""

    name: ClassVar[str] = "phash_windows"
    writes: ClassVar[tuple[str, ...]] = ("phash_windows",)
    parallel: ClassVar[bool] = True

    def validate(self) -> None:
        from captionary.core.optional import require

        require("imagehash", "dedup")

    def apply(self, item: Item) -> dict[str, Any]:
        from captionary.steps.dedup.windows import window_hashes

        return {"phash_windows": window_hashes(item.image)}
