"""A JPEG's size, mode and EXIF orientation read from its segments, as Pillow reads them, without Pillow.

Pillow parses a JPEG header in Python (every quantization and Huffman table, ~35 us a file); walking
the few segment markers to the frame header costs a few microseconds. Whatever this reader does not
handle exactly as Pillow does (no frame header, a bit depth or layer count Pillow refuses, a second
frame header, XMP that may name an orientation, EXIF it cannot read) answers None: the caller then
asks Pillow, so a file is never judged differently.
"""

from __future__ import annotations

from typing import NamedTuple

EXIF_ORIENTATION = 0x0112
_MODES = {1: "L", 3: "RGB", 4: "CMYK"}  # Pillow's mode for a frame's number of layers
# Pillow's frame-header markers (DHP included, as Pillow reads it), and the markers it reads no
# length after (SOI, EOI, RSTn, JPG, JPGn): met before the scan, they are left to Pillow.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE})
_NO_LENGTH = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})
_EXIF = b"Exif\x00\x00"
_SHORT = 3
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
# Segments Pillow indexes into without checking their length (a short one makes Image.open fail):
# the JFIF version, Adobe's version, an ICC profile chunk's count.
_MIN_PAYLOAD = ((0xE0, b"JFIF", 7), (0xEE, b"Adobe", 7), (0xE2, b"ICC_PROFILE\x00", 14))


class JpegHeader(NamedTuple):
    width: int  # as stored (not turned by the orientation)
    height: int
    mode: str
    orientation: int  # EXIF orientation; 1 when the file names none
    scan: int  # where the first scan starts (its SOS marker)

    def complete(self, data: bytes) -> bool:
        """The bytes hold an end-of-image marker after the scan starts: a file cut off anywhere in
        its pixel data has none (inside the scan a 0xFF byte is always followed by 0x00 or a restart
        marker), which is what Pillow's decode reports as "image file is truncated"."""
        return data.rfind(b"\xff\xd9") > self.scan


def jpeg_header(data: bytes) -> JpegHeader | None:
    """The header facts of JPEG bytes, or None (not a JPEG, or anything left for Pillow to judge)."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    frame: tuple[int, int, int, int] | None = None  # bits, height, width, layers
    exif: bytes | None = None
    pos, end = 2, len(data)
    while True:
        if pos + 4 > end or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the header is complete (Pillow reads its length too)
            length = (data[pos + 2] << 8) | data[pos + 3]
            if length < 2 or pos + 2 + length > end:
                return None
            break
        if marker < 0xC0 or marker in _NO_LENGTH:  # Pillow: "no marker found", or no length read
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        payload_end = pos + 2 + length
        if length < 2 or payload_end > end:
            return None
        payload = data[pos + 4 : payload_end]
        if marker in _SOF:
            # Pillow reads bits, size, layers, then 3 bytes per layer (a ragged tail fails it)
            if frame is not None or len(payload) < 6 or (len(payload) - 6) % 3:
                return None
            frame = (payload[0], _u16(payload, 1), _u16(payload, 3), payload[5])
        elif marker == 0xDB and not _quantization_tables_whole(payload):
            return None
        elif marker == 0xE1:  # APP1: EXIF (Pillow joins several), or XMP that may name an orientation
            if payload.startswith(_EXIF):
                if exif is not None:
                    return None
                exif = payload[len(_EXIF) :]
            elif b"Orientation" in payload:
                return None
        elif _left_to_pillow(marker, payload):
            return None
        pos = payload_end
    if frame is None:
        return None
    bits, height, width, layers = frame
    if bits != 8 or layers not in _MODES or not width or not height:
        return None
    orientation = 1 if exif is None else exif_orientation(exif)
    if orientation is None:
        return None
    return JpegHeader(width, height, _MODES[layers], orientation, pos)


def exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of EXIF's first directory (1 when it has none), or None when the directory
    cannot be read plainly (bad byte order or offsets, the tag twice or not one SHORT)."""
    head = tiff[:4]
    if head == b"II*\x00":
        order = "little"
    elif head == b"MM\x00*":
        order = "big"
    else:
        return None
    directory = int.from_bytes(tiff[4:8], order)
    if directory < 8 or directory + 2 > len(tiff):
        return None
    count = int.from_bytes(tiff[directory : directory + 2], order)
    entries = directory + 2
    if entries + 12 * count > len(tiff):
        return None
    found: int | None = 1
    seen = False
    for entry in range(entries, entries + 12 * count, 12):
        tag = int.from_bytes(tiff[entry : entry + 2], order)
        kind = int.from_bytes(tiff[entry + 2 : entry + 4], order)
        values = int.from_bytes(tiff[entry + 4 : entry + 8], order)
        size = values * _TYPE_SIZES.get(kind, 0)
        # a value stored elsewhere that lies past the end stops Pillow's reading of the directory
        if size > 4 and int.from_bytes(tiff[entry + 8 : entry + 12], order) + size > len(tiff):
            return None
        if tag != EXIF_ORIENTATION:
            continue
        if seen or kind != _SHORT or values != 1:
            return None
        seen = True
        found = int.from_bytes(tiff[entry + 8 : entry + 10], order)
    return found


def _left_to_pillow(marker: int, payload: bytes) -> bool:
    """A phone's multi-picture segment (MPO), or a segment too short for what Pillow reads of it."""
    if marker == 0xE2 and payload.startswith(b"MPF\x00"):
        return True
    return any(marker == m and payload.startswith(p) and len(payload) < n for m, p, n in _MIN_PAYLOAD)


def _quantization_tables_whole(payload: bytes) -> bool:
    """Each table of a DQT segment is complete (64 values of 1 or 2 bytes), as Pillow requires."""
    pos = 0
    while pos < len(payload):
        pos += 1 + 64 * (1 if payload[pos] >> 4 == 0 else 2)
    return pos == len(payload)


def _u16(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]
