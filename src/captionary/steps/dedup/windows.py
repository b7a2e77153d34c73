"""Window hashes: perceptual hashes of the regions a cropped or mirrored copy of an image would show.

pHash compares whole frames, so a copy cropped by more than about 3% per side, or mirrored, looks like
another picture. A copy cropped by up to 10% per side shows a window of the original that contains its
central 80%; the window hashes cover that range: centred windows at 96% to 80% of each side, windows at
95% and 90% anchored in each corner or along each edge, and all of them again on the mirrored image,
with the mirrored whole frame. Some window of the original is then within a pixel or so (of the hash's
32 x 32) of the copy's whole frame: on 50 DreamBooth photos, copies cropped by 3-10% on every side, by
10% at a corner, by up to 10% on one side, mirrored, or both were all within 6 bits of a window of their
original; crops of 0-10% drawn at random for each of the four sides 79% (93% within 8 bits: the grid of
windows is coarse for four independent sides). Matches are only candidates: `verify.py` decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

THUMBNAIL = 256  # windows are cut from a greyscale copy this large: pHash looks at 32 x 32 anyway
CENTRED = (0.96, 0.92, 0.88, 0.84, 0.8)
ANCHORED = (0.95, 0.9)
WINDOWS = 2 * (len(CENTRED) + 8 * len(ANCHORED)) + 1
"""Hashes per image: the windows, then the mirrored frame and the mirrored windows."""


def window_hashes(image: Image) -> list[str]:
    """The pHashes (16 hex digits each) of `image`'s windows, then of its mirror image and the
    mirror's windows: `WINDOWS` hashes, in a fixed order."""
    from PIL import ImageOps

    from captionary.steps.dedup.fingerprints import perceptual_hash

    grey = image.convert("L")
    grey.thumbnail((THUMBNAIL, THUMBNAIL))
    mirrored = ImageOps.mirror(grey)
    hashes = [perceptual_hash(grey.crop(box)) for box in _boxes(grey.width, grey.height)]
    hashes.append(perceptual_hash(mirrored))
    hashes += [perceptual_hash(mirrored.crop(box)) for box in _boxes(grey.width, grey.height)]
    return hashes


def _boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    boxes = []
    for share in CENTRED:
        dx, dy = (1 - share) / 2 * width, (1 - share) / 2 * height
        boxes.append((round(dx), round(dy), round(width - dx), round(height - dy)))
    for share in ANCHORED:
        w, h = share * width, share * height
        for right, bottom in ((0, 0), (1, 0), (0, 1), (1, 1)):  # corners
            x, y = right * (width - w), bottom * (height - h)
            boxes.append((round(x), round(y), round(x + w), round(y + h)))
        boxes += [(0, 0, round(w), height), (round(width - w), 0, width, height)]  # left, right edge
        boxes += [(0, 0, width, round(h)), (0, round(height - h), width, height)]  # top, bottom edge
    return boxes
