"""The Pillow engine: what captionary always did (Pillow is a core dependency)."""

from __future__ import annotations

import io
import math
from typing import Any

from captionary.core.engines import Draft

RESAMPLING = {
    "lanczos": "LANCZOS",
    "bicubic": "BICUBIC",
    "hamming": "HAMMING",
    "bilinear": "BILINEAR",
    "box": "BOX",
    "nearest": "NEAREST",
}


class PillowEngine:
    name = "pillow"
    lazy = False

    def owns(self, image: Any) -> bool:
        from PIL import Image

        return isinstance(image, Image.Image)

    def decode(self, data: bytes, draft: Draft | None = None) -> Any:
        """Decoded (so truncation is caught here), EXIF orientation applied; a JPEG at the smallest
        DCT scale that keeps `draft(width, height)` of its size, which is several times faster."""
        from PIL import Image, ImageOps

        image = Image.open(io.BytesIO(data))
        image.decodermaxblock = max(image.decodermaxblock, len(data))  # decoded in one call: one GIL release
        scale = draft(*_upright(image)) if draft is not None and image.format in ("JPEG", "MPO") else None
        if scale is not None and scale < 1:
            image.draft(image.mode, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of the pixels when upright
        return image

    def adopt(self, image: Any) -> Any:
        from captionary.core.engines import as_pil

        return as_pil(image)

    def realize(self, image: Any) -> Any:
        return image  # Pillow computes eagerly

    def resize(self, image: Any, size: tuple[int, int], resample: str) -> Any:
        from PIL import Image

        if image.mode not in ("RGB", "RGBA", "L", "LA", "I", "F"):
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        method = getattr(Image.Resampling, RESAMPLING[resample])
        return image.resize(size, method, reducing_gap=3.0)

    def crop(self, image: Any, box: tuple[int, int, int, int]) -> Any:
        return image.crop(box)

    def to_rgb(self, image: Any, background: tuple[int, int, int]) -> Any:
        from captionary.core.images import to_rgb

        if image.mode == "RGB":
            return image
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale to 8 bits
            image = image.point(lambda v: v / 256).convert("L")
        return to_rgb(image, background)

    def encode(self, image: Any, target: str, quality: int) -> bytes:
        """Pillow's `save`: JPEG without alpha; a PNG keeps the ICC profile, JPEG and WebP drop it."""
        if target == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        buffer = io.BytesIO()
        options: dict[str, Any] = {"quality": quality} if target in ("JPEG", "WEBP") else {}
        image.save(buffer, format=target, **options)
        return buffer.getvalue()


def _upright(image: Any) -> tuple[int, int]:
    width, height = image.size
    return (height, width) if image.getexif().get(0x0112, 1) in (5, 6, 7, 8) else (width, height)


PILLOW = PillowEngine()
