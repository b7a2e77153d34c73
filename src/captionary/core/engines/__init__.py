"""Image engines: the library that decodes, resizes, crops, converts and encodes pixels in the fused
CPU chain (`load` ... `resize`, `crop_to_aspect`, `convert` ... the sinks' encode).

`pillow` (always there) and `vips` (libvips through pyvips: `pip install 'captionary[vips]'`). Each is
one small module behind `ImageEngine`; steps ask `get(name)` and never test which engine they have.
An image is the engine's own type (a `PIL.Image.Image` or a `pyvips.Image`); `adopt` takes the other
engine's image, so a chain may mix steps of both. Everything outside the chain sees PIL images
(`as_pil`): `Item.image` is always one.

`auto` chooses per image (`choose`): libvips costs ~0.6-1 ms more per call than Pillow, so small images
are cheaper in Pillow and large ones in vips (`AUTO_VIPS_FROM`, measured by
`benchmarks/engine_crossover.py`).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import typing
from collections.abc import Callable
from typing import Any, Literal, Protocol

EngineName = Literal["auto", "pillow", "vips"]
"""An image step's `engine` parameter: `auto` chooses per image (`choose`) when pyvips is installed,
else it is pillow."""

AUTO_VIPS_FROM: dict[str, int] = {"PNG": 40_000, "WEBP": 2_000_000}
"""`auto`: the source pixels (width x height) from which an image is worked on by vips, by its format
(`AUTO_VIPS_FROM_OTHER` for the others). CPU ms per image on one core, Pillow / vips
(`benchmarks/engine_crossover.py`; decode, resize to half with Lanczos, encode in the same format):
JPEG 480x360 3.18/3.37, 560x420 4.04/3.49, 640x480 5.16/4.01, 1024x768 13.2/7.3, 2048x1536 58/21
(TIFF alike). A JPEG that is not resized is cheaper in Pillow at every size (decode + encode
2048x1536: 15.5/17.3). PNG: Pillow's encoder is the slow part (decode + encode 160x120 5.1/2.4,
240x180 14.6/4.2; decode only 240x180 1.14/1.62, 320x240 1.99/1.97). WebP: vips wins only from a few
megapixels (1024x768 39.6/44.0, 2048x1536 157/139)."""
AUTO_VIPS_FROM_OTHER = 250_000
"""`auto`'s threshold for formats `AUTO_VIPS_FROM` does not name: JPEG (and MPO), TIFF, GIF, BMP..."""

Draft = Callable[[int, int], float | None]
"""`draft(width, height)` (upright size): a scale < 1 lets a JPEG be decoded shrunk (shrink-on-load)."""


class ImageEngine(Protocol):
    """What the fused chain needs of an image library. Every method returns a new image (inputs are
    shared between items and never changed in place) or the input itself when nothing changes."""

    name: str
    lazy: bool  # `decode` returns an image read once (see `decode`)

    def owns(self, image: Any) -> bool:
        """True if `image` is this engine's type."""

    def decode(self, data: bytes, draft: Draft | None = None) -> Any:
        """Decoded pixels, upright (EXIF orientation applied, the tag dropped); raises on a corrupt,
        truncated or oversized (decompression bomb) file. May be lazy (vips): such an image is read
        once, by `realize`, `encode` or `adopt`; realize it first to read it more than once."""

    def adopt(self, image: Any) -> Any:
        """`image` as this engine's type (from the other engine's, or itself)."""

    def realize(self, image: Any) -> Any:
        """The image computed now, so a decode error is raised by the step that caused it."""

    def resize(self, image: Any, size: tuple[int, int], resample: str) -> Any:
        """Scaled to `size` with `resample` (lanczos, bicubic, bilinear, nearest; Pillow also hamming
        and box)."""

    def crop(self, image: Any, box: tuple[int, int, int, int]) -> Any:
        """The pixels in (left, top, right, bottom)."""

    def to_rgb(self, image: Any, background: tuple[int, int, int]) -> Any:
        """Plain 8-bit RGB: transparency composited onto `background`, 16-bit scaled to 8 bits."""

    def encode(self, image: Any, target: str, quality: int) -> bytes:
        """File bytes in `target` (JPEG, PNG, WEBP) at `quality`."""


@functools.cache
def has_engine_parameter(cls: type) -> bool:
    """A step class with an image `engine` parameter (annotated `EngineName`): a parameter of another
    meaning that happens to be called `engine` (a user's OCR engine) is left alone."""
    return typing.get_type_hints(cls).get("engine") == EngineName


def vips_available() -> bool:
    """pyvips is installed (found without importing it: the import costs ~80 ms)."""
    if "pyvips" in sys.modules:  # imported already, or blocked (None)
        return sys.modules["pyvips"] is not None
    return _pyvips_found()


@functools.cache
def _pyvips_found() -> bool:
    """Looked for once per process: a search of the path costs ~40 us, and `auto` asks per image."""
    return importlib.util.find_spec("pyvips") is not None


def check(name: str, user: str) -> None:
    """Refuse `engine: vips` when pyvips is not installed, with the install line (before any work)."""
    if name == "vips" and not vips_available():
        from captionary.errors import ConfigError

        raise ConfigError(
            f"{user} uses the vips image engine, which needs pyvips: pip install 'captionary[vips]'"
        )


def resolve(name: str) -> str:
    """`pillow`, `vips`, or `auto` (chosen per image, `choose`) when pyvips is installed: `auto`
    without pyvips is `pillow`."""
    if name == "auto":
        return "auto" if vips_available() else "pillow"
    if name not in ("pillow", "vips"):
        raise ValueError(f"unknown image engine {name!r} (auto, pillow or vips)")
    return name


def choose(width: int, height: int, fmt: str) -> str:
    """The engine `auto` takes for a source image of `width` x `height` pixels in format `fmt` (a
    Pillow format name): vips from its format's threshold (`AUTO_VIPS_FROM`) when installed."""
    if not vips_available():
        return "pillow"
    threshold = AUTO_VIPS_FROM.get(fmt, AUTO_VIPS_FROM_OTHER)
    return "vips" if width * height >= threshold else "pillow"


def auto_rule() -> str:
    """What `auto` means where pyvips is installed, as it joins an image step's cache key: a new
    threshold gives new keys."""
    named = "".join(f"{fmt}>={pixels}," for fmt, pixels in sorted(AUTO_VIPS_FROM.items()))
    return f"auto:vips if pixels {named}other>={AUTO_VIPS_FROM_OTHER}"


def get(name: str) -> ImageEngine:
    """The engine called `name` (pillow or vips); vips raises ConfigError naming the extra when
    pyvips is not installed. `auto` is chosen per image (`choose`), never here."""
    if name == "auto":
        raise ValueError("`auto` is chosen per image: engines.choose(width, height, format)")
    name = resolve(name)
    if name == "pillow":
        from captionary.core.engines.pillow import PILLOW

        return PILLOW
    from captionary.core.engines.vips import VIPS

    return VIPS


def owner(image: Any) -> ImageEngine:
    """The engine whose type `image` is."""
    from PIL import Image

    return get("pillow") if isinstance(image, Image.Image) else get("vips")


def as_pil(image: Any) -> Any:
    """A PIL image of any engine's image (what steps outside the chain and user code see)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    from captionary.core.engines.vips import to_pil

    return to_pil(image)
