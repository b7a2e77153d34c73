"""The libvips engine (pyvips; `pip install 'captionary[vips]'` brings pyvips-binary, which ships
libvips): about twice Pillow's speed per core on decode + resize + encode, JPEGs shrunk on load.

It gives what the Pillow engine gives where users look: upright pixels without the orientation tag,
the ICC profile carried along unconverted (kept in PNG, dropped from JPEG and WebP, as Pillow's `save`
does), alpha premultiplied while resizing, CMYK turned into RGB by Pillow's formula, 16-bit scaled to
8 bits, palettes expanded, the first frame of an animation, and Pillow's decompression-bomb limit
(`PIL.Image.MAX_IMAGE_PIXELS`). Formats libvips cannot read (BMP, ICO, ...) are decoded by Pillow.
Images are 8-bit with 1-4 bands (L, LA, RGB, RGBA) from decode on.
"""

from __future__ import annotations

import math
from typing import Any

from captionary.core.engines import Draft
from captionary.core.optional import require

KERNELS = {"lanczos": "lanczos3", "bicubic": "cubic", "bilinear": "linear", "nearest": "nearest"}
MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
ICC = "icc-profile-data"
_pyvips: Any = None


def _vips() -> Any:
    """pyvips, imported on first use: one libvips thread per process (the chain already runs a
    process per core) and no operation cache (every image is decoded once)."""
    global _pyvips
    if _pyvips is None:
        pyvips = require("pyvips", "vips", user="the vips image engine")
        pyvips.concurrency_set(1)
        pyvips.cache_set_max(0)
        _pyvips = pyvips
    return _pyvips


class VipsEngine:
    name = "vips"
    lazy = True

    def owns(self, image: Any) -> bool:
        return isinstance(image, _vips().Image)

    def decode(self, data: bytes, draft: Draft | None = None) -> Any:
        pyvips = _vips()
        loader = _loader(pyvips, data)
        if loader is None:  # not a format libvips reads: Pillow decodes it (and words its errors)
            from captionary.core.engines.pillow import PILLOW

            return self.adopt(PILLOW.decode(data, draft))
        try:
            header = pyvips.Operation.call(loader, data, string_options="")  # the header only
        except pyvips.Error as exc:
            raise ValueError(f"corrupt or truncated image header: {_reason(exc)}") from None
        _check_bomb(header.width, header.height)
        turned = _orientation(header) in (5, 6, 7, 8)
        options: dict[str, Any] = {"fail_on": "truncated"}
        if _orientation(header) == 1:
            options["access"] = "sequential"  # streamed: no rotation needs the whole image
        if draft is not None and loader.startswith("VipsForeignLoadJpeg"):
            upright = (header.height, header.width) if turned else (header.width, header.height)
            scale = draft(*upright)
            if scale is not None and scale < 1:
                options["shrink"] = _jpeg_shrink(header.width, header.height, scale)
        try:  # lazy: the first step's `realize` decodes and transforms in one streamed pass
            image = pyvips.Operation.call(loader, data, string_options="", **options)
            return _normal(image.autorot())
        except pyvips.Error as exc:
            raise ValueError(f"corrupt or truncated image data: {_reason(exc)}") from None

    def adopt(self, image: Any) -> Any:
        if self.owns(image):
            return image
        return _from_pil(image)

    def realize(self, image: Any) -> Any:
        try:
            return image.copy_memory()
        except _vips().Error as exc:
            raise ValueError(f"corrupt or truncated image data: {_reason(exc)}") from None

    def resize(self, image: Any, size: tuple[int, int], resample: str) -> Any:
        width, height = size
        alpha = image.bands in (2, 4)
        if alpha:  # as Pillow: colour weighted by alpha, so transparent pixels do not bleed
            image = image.premultiply()
        out = image.resize(
            width / image.width, vscale=height / image.height, kernel=KERNELS[resample], gap=3.0
        )
        if alpha:  # and, as Pillow, no colour left under fully transparent pixels
            out = out.unpremultiply()
            out = (out[out.bands - 1] < 0.5).ifthenelse(0, out)
        if out.format != "uchar":
            out = out.cast("uchar")
        if (out.width, out.height) != size:  # rounding inside libvips: never a pixel off the asked size
            out = out.gravity("north-west", width, height, extend="copy")
        return out

    def crop(self, image: Any, box: tuple[int, int, int, int]) -> Any:
        left, top, right, bottom = box
        return image.crop(left, top, right - left, bottom - top)

    def to_rgb(self, image: Any, background: tuple[int, int, int]) -> Any:
        if image.bands == 3:
            return image
        if image.bands in (1, 2):
            grey = image[0]
            colour = grey.bandjoin([grey, grey])
            image = colour.bandjoin(image[1]) if image.bands == 2 else colour
        if image.bands == 4:
            image = image.flatten(background=list(background)).cast("uchar")
        return image.copy(interpretation="srgb")

    def encode(self, image: Any, target: str, quality: int) -> bytes:
        """As Pillow's `save`: JPEG loses alpha (grey + alpha becomes RGB) and 4:2:0 chroma at every
        quality; the ICC profile stays in PNG only; no EXIF."""
        if target == "JPEG":
            if image.bands == 2:
                grey = image[0]
                image = grey.bandjoin([grey, grey]).copy(interpretation="srgb")
            elif image.bands == 4:
                image = image[0:3]
            return image.jpegsave_buffer(Q=quality, subsample_mode="on", keep="none")
        if target == "PNG":
            return image.pngsave_buffer(keep="icc")
        if target == "WEBP":
            return image.webpsave_buffer(Q=quality, keep="none")
        raise ValueError(f"the vips engine cannot encode {target}")


def to_pil(image: Any) -> Any:
    """A vips image (8-bit, 1-4 bands) as a PIL image, its ICC profile in `info`."""
    from PIL import Image

    if image.format != "uchar":
        image = image.cast("uchar")
    mode = MODES[image.bands]
    try:
        data = image.write_to_memory()
    except _vips().Error as exc:
        raise ValueError(f"corrupt or truncated image data: {_reason(exc)}") from None
    out = Image.frombuffer(mode, (image.width, image.height), data, "raw", mode, 0, 1)
    if image.get_typeof(ICC):
        out.info["icc_profile"] = image.get(ICC)
    return out


def _from_pil(image: Any) -> Any:
    pyvips = _vips()
    image = _pil_normal(image)
    bands = len(image.mode)
    out = pyvips.Image.new_from_memory(image.tobytes(), image.width, image.height, bands, "uchar")
    out = out.copy(interpretation="srgb" if bands >= 3 else "b-w")
    if icc := image.info.get("icc_profile"):
        out.set_type(pyvips.GValue.blob_type, ICC, icc)
    return out


def _pil_normal(image: Any) -> Any:
    """A PIL image as L, LA, RGB or RGBA (the modes a vips image of this engine has)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ("P", "PA"):
        return image.convert("RGBA" if mode == "PA" or "transparency" in image.info else "RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L")
    if mode in ("1", "F"):
        return image.convert("L")
    return image.convert("RGBA" if "transparency" in image.info else "RGB")


def _normal(image: Any) -> Any:
    """8-bit L, LA, RGB or RGBA, as Pillow decodes the same file (and its modes reach RGB)."""
    if image.interpretation == "cmyk" and image.bands >= 4:
        image = _cmyk_to_rgb(image)
    if image.format == "ushort":  # 16-bit: the high byte, as Pillow reads 16-bit RGB(A)
        image = (image >> 8).cast("uchar")
    elif image.format != "uchar":
        image = image.cast("uchar")
    if image.bands > 4:
        image = image[0:4]
    return image.copy(interpretation="srgb" if image.bands >= 3 else "b-w")


def _cmyk_to_rgb(image: Any) -> Any:
    """Pillow's CMYK -> RGB: each channel (255 - ink) * (255 - black) / 255, no colour management."""
    if image.format != "uchar":
        image = (image >> 8).cast("uchar")
    white = 255 - image[3]
    inks = [(255 - image[i]) * white / 255 for i in range(3)]
    rgb = inks[0].bandjoin(inks[1:])
    return (rgb + 0.5).cast("uchar")


def _jpeg_shrink(width: int, height: int, scale: float) -> int:
    """libjpeg's shrink-on-load factor, chosen as Pillow's `draft` chooses its DCT scale."""
    wanted = (math.ceil(width * scale), math.ceil(height * scale))
    ratio = min(width // wanted[0], height // wanted[1])
    return next(factor for factor in (8, 4, 2, 1) if ratio >= factor)


def _loader(pyvips: Any, data: bytes) -> str | None:
    """The libvips loader for these bytes, or None when libvips reads no such format."""
    if not data:
        return None
    pointer = pyvips.vips_lib.vips_foreign_find_load_buffer(data, len(data))
    if pointer == pyvips.ffi.NULL:
        pyvips.vips_lib.vips_error_clear()
        return None
    return pyvips.ffi.string(pointer).decode()


def _orientation(image: Any) -> int:
    return image.get("orientation") if image.get_typeof("orientation") else 1


def _check_bomb(width: int, height: int) -> None:
    """Pillow's decompression-bomb limit (twice `MAX_IMAGE_PIXELS`; None: no limit)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > 2 * limit:
        raise ValueError(
            f"refused as a decompression bomb: Image size ({width * height} pixels) exceeds limit of "
            f"{2 * limit} pixels, could be decompression bomb DOS attack."
        )


def _reason(exc: Exception) -> str:
    detail = getattr(exc, "detail", "") or str(exc)
    lines = [line.strip() for line in str(detail).splitlines() if line.strip()]
    return "; ".join(lines[:2]) or str(exc)


VIPS = VipsEngine()
