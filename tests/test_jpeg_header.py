"""`core/jpeg_header.py` reads a JPEG's size, mode and orientation without Pillow: wherever it answers,
the answer must be Pillow's, and `probe` (which uses it when it does not decode) must judge every file,
good or broken, exactly as the Pillow path does."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from captionary.core import images
from captionary.core.images import probe
from captionary.core.jpeg_header import exif_orientation, jpeg_header


def jpeg(mode="RGB", size=(40, 30), orientation=None, endian="<", **options) -> bytes:
    image = Image.new(mode, size, "white" if mode != "CMYK" else (0, 0, 0, 0))
    if orientation is not None:
        exif = Image.Exif()
        exif.endian = endian
        exif[0x0112] = orientation
        exif[0x010F] = "maker"
        options["exif"] = exif.tobytes()
    out = io.BytesIO()
    image.save(out, "JPEG", **options)
    return out.getvalue()


def pillow_probe(data: bytes, monkeypatch) -> images.ImageInfo | str:
    """`probe` as it was before the fast reader: Pillow alone (the error text when it refuses)."""
    with monkeypatch.context() as patch:
        patch.setattr(images, "jpeg_header", lambda data: None)
        return outcome(data)


def outcome(data: bytes) -> images.ImageInfo | str:
    try:
        return probe(data, verify=False)
    except ValueError as exc:
        return str(exc)


SAMPLES = {
    "rgb": jpeg(),
    "grey": jpeg("L"),
    "cmyk": jpeg("CMYK"),
    "progressive": jpeg(progressive=True),
    "icc": jpeg(icc_profile=b"\0" * 300),
    "comment": jpeg(comment=b"hello"),
    **{f"exif{n}": jpeg(size=(40, 30), orientation=n) for n in range(1, 9)},
    **{f"exif{n} big-endian": jpeg(size=(40, 30), orientation=n, endian=">") for n in (1, 6, 8)},
    "exif without orientation": jpeg(exif=Image.Exif().tobytes()),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_header_read_is_what_pillow_reads(name):
    data = SAMPLES[name]
    header = jpeg_header(data)
    assert header is not None, name
    image = Image.open(io.BytesIO(data))
    assert (header.width, header.height, header.mode) == (*image.size, image.mode)
    assert header.orientation == image.getexif().get(0x0112, 1)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_probe_answers_as_the_pillow_path(name, monkeypatch):
    assert outcome(SAMPLES[name]) == pillow_probe(SAMPLES[name], monkeypatch)


def test_a_turned_photo_reports_its_upright_size():
    turned = probe(jpeg(size=(40, 30), orientation=6), verify=False)
    upside_down = probe(jpeg(size=(40, 30), orientation=3), verify=False)
    assert (turned.width, turned.height, upside_down.width, upside_down.height) == (30, 40, 40, 30)


def test_what_it_does_not_read_plainly_is_left_to_pillow():
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>6</tiff:Orientation></x:xmpmeta>'
    assert jpeg_header(jpeg(xmp=xmp)) is None  # XMP may name the orientation (Pillow reads it)
    twelve_bit = bytearray(SAMPLES["rgb"])
    sof = twelve_bit.index(b"\xff\xc0")
    twelve_bit[sof + 4] = 12
    assert jpeg_header(bytes(twelve_bit)) is None  # Pillow refuses 12-bit: so must probe
    assert jpeg_header(SAMPLES["rgb"][:20]) is None  # cut off before the frame header
    assert jpeg_header(b"\x89PNG\r\n\x1a\n") is None
    assert exif_orientation(b"XX*\x00\x08\x00\x00\x00") is None  # no byte order


def test_a_huge_frame_goes_to_pillow_for_its_bomb_check(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's warning, as before the fast path
        probe(jpeg(size=(20, 10)), verify=False)
    with pytest.raises(ValueError, match="decompression bomb"):
        probe(jpeg(size=(20, 20)), verify=False)


def test_broken_headers_are_judged_as_pillow_judges_them(monkeypatch):
    """Cut and bit-flipped headers of every sample: the same answer or the same error as Pillow's."""
    rng = random.Random(7)
    checked = 0
    for data in SAMPLES.values():
        scan = data.index(b"\xff\xda")
        variants = [data[:cut] for cut in range(0, scan + 4, 7)]
        for _ in range(40):
            broken = bytearray(data)
            broken[rng.randrange(2, scan + 2)] = rng.randrange(256)
            variants.append(bytes(broken))
        for variant in variants:
            assert outcome(variant) == pillow_probe(variant, monkeypatch), variant[:scan]
            checked += 1
    assert checked > 1000


@pytest.mark.parametrize("name", ["rgb", "progressive", "exif6"])
def test_a_file_is_whole_until_it_is_cut_anywhere_in_its_pixels(name):
    data = SAMPLES[name]
    header = jpeg_header(data)
    assert header.complete(data) and header.complete(data + b"trailing bytes")
    for cut in range(header.scan + 2, len(data) - 1, max(1, (len(data) - header.scan) // 25)):
        assert not header.complete(data[:cut]), cut
    assert not header.complete(data[:-1])
