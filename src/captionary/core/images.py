"""Reading image headers and checking that image bytes decode (Pillow, imported lazily)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Literal

from captionary.core.jpeg_header import EXIF_ORIENTATION, jpeg_header

_TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int  # upright, after EXIF orientation
    height: int
    format: str
    mode: str


STRUCTURE = "structure"
Verify = bool | Literal["structure"]
"""How a new image is checked: True decodes it once (JPEGs at 1/8 scale); "structure" checks that a
JPEG is whole (its header read plainly, an end-of-image marker after its scan) and decodes anything
else; False reads its header only."""


def probe(data: bytes, *, verify: Verify = True) -> ImageInfo:
    """Header facts of an image, checked as `verify` says.

    Raises ValueError with a reason a person can act on, whatever Pillow raised (a file cut off
    inside its header raises OSError from `Image.open` or `getexif`).
    """
    if not data:
        raise ValueError("empty file (0 bytes)")
    if verify is not True and (fast := _jpeg_info(data, verify == STRUCTURE)) is not None:
        return fast
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read (unknown or corrupt header)") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # a cut-off header: OSError, SyntaxError, struct.error, ... from the plugins
        raise ValueError(f"corrupt or truncated image header ({len(data)} bytes): {exc}") from None
    if orientation in _TRANSPOSED:
        width, height = height, width
    info = ImageInfo(width, height, normal_format(image.format), image.mode)
    if verify:
        try:
            if info.format == "JPEG":
                image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        except Exception as exc:
            raise ValueError(f"corrupt or truncated image data: {exc}") from None
    return info


def _jpeg_info(data: bytes, whole: bool) -> ImageInfo | None:
    """A JPEG's facts from its segments (`core/jpeg_header.py`: what Pillow would say, without its
    ~35 us Python header parse); None leaves the file to Pillow, as does a size over Pillow's
    decompression-bomb limit (Pillow warns or refuses it). `whole`: a file cut off before its end
    marker is refused with the reason Pillow's decode would give."""
    header = jpeg_header(data)
    if header is None:
        return None
    width, height = header.width, header.height
    if width * height > _max_pixels():
        return None
    if whole and not header.complete(data):
        raise ValueError(
            "corrupt or truncated image data: image file is truncated (no end-of-image marker after "
            "its pixel data)"
        )
    if header.orientation in _TRANSPOSED:
        width, height = height, width
    return ImageInfo(width, height, "JPEG", header.mode)


def _max_pixels() -> float:
    """Pillow's `MAX_IMAGE_PIXELS` (None: no limit). Imported, not looked up in `sys.modules`: another
    thread may be importing Pillow right now, and only the import waits for it to finish."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return math.inf if limit is None else limit


def normal_format(pil_format: str | None) -> str:
    """Pillow's format name, with MPO (a phone's JPEG with extra pictures appended) called JPEG."""
    return "JPEG" if pil_format == "MPO" else (pil_format or "")


FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


# Extensions Pillow's built-in pure-Python plugins always open, and ones it never registers (a
# folder's caption and metadata sidecars): told without importing Pillow and its ~45 plugins (55 ms),
# which a cached re-run of a folder of JPEGs never needs. tests/test_startup_imports.py checks both
# against the installed Pillow.
ALWAYS_READABLE = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}
)
NEVER_READABLE = frozenset({".txt", ".caption", ".json", ".jsonl", ".csv", ".yaml", ".yml", ".md"})


class ReadableExtensions:
    """`ext in readable` (a lowercase `.ext`) as `readable_extensions()` says, loading Pillow's registry
    only for an extension neither common set tells."""

    def __init__(self) -> None:
        self._all: frozenset[str] | None = None

    def __contains__(self, ext: object) -> bool:
        if ext in ALWAYS_READABLE:
            return True
        if ext in NEVER_READABLE:
            return False
        if self._all is None:
            self._all = readable_extensions()
        return ext in self._all


def readable_extensions() -> frozenset[str]:
    """File extensions of every format Pillow can open."""
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def to_rgb(image: Any, background: tuple[int, int, int] = (255, 255, 255)) -> Any:
    """An RGB image: transparency composited onto `background` (white by default), other modes
    converted; an RGB image is returned as it is."""
    from PIL import Image as PILImage

    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = PILImage.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")
