"""Is a candidate pair one shot? Align the two images on local features, then compare their pixels.

A crop, a mirror or a re-encoding of a photo maps onto the original by a similarity transform (scale,
shift, a little rotation), and once aligned the two agree pixel for pixel. Two shots of one subject
share features (a can's label, a dog's face) but not the rest of the frame. So: ORB features on both
(mirrored too), a similarity transform fitted with RANSAC, and the normalised cross-correlation of the
aligned greyscale pixels where they overlap (insensitive to brightness and contrast changes).

Measured on the 158 DreamBooth photos (every pair of photos of one subject; see
`benchmarks/near_dups.py`): copies cropped by up to 10% per side, mirrored, re-encoded at q50, resized
or brightened score 0.95-1.00; different shots at most 0.92 (a red cartoon on white, where the white
agrees), so `MIN_CORRELATION` is 0.94.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

EDGE = 384  # features and pixels are compared at this size (longest side)
FEATURES = 500
MIN_INLIERS = 20  # feature matches the fitted transform explains
MIN_CORRELATION = 0.94
MIN_OVERLAP = 0.3  # of the smaller image: a tiny overlap proves nothing


@dataclass
class Features:
    """One image's greyscale pixels at `EDGE`, its ORB keypoints and descriptors."""

    pixels: np.ndarray
    points: np.ndarray
    descriptors: np.ndarray | None


def features(image: Image, *, mirror: bool = False) -> Features:
    import cv2
    import numpy as np
    from PIL import ImageOps

    grey = image.convert("L")
    grey.thumbnail((EDGE, EDGE))
    if mirror:
        grey = ImageOps.mirror(grey)
    pixels = np.asarray(grey)
    keypoints, descriptors = _orb(cv2).detectAndCompute(pixels, None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return Features(pixels, points, descriptors)


def correlation(a: Features, b: Features) -> float:
    """The aligned pixels' correlation (-1..1), or 0.0 where the two cannot be aligned."""
    import cv2
    import numpy as np

    if a.descriptors is None or b.descriptors is None or min(len(a.points), len(b.points)) < MIN_INLIERS:
        return 0.0
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < MIN_INLIERS:
        return 0.0
    source = a.points[[m.queryIdx for m in good]]
    target = b.points[[m.trainIdx for m in good]]
    transform, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=4.0
    )
    if transform is None or int(inliers.sum()) < MIN_INLIERS:
        return 0.0
    height, width = b.pixels.shape
    warped = cv2.warpAffine(a.pixels.astype(np.float32), transform, (width, height), flags=cv2.INTER_AREA)
    inside = cv2.warpAffine(np.ones(a.pixels.shape, np.uint8), transform, (width, height)) > 0
    smaller = min(a.pixels.size, b.pixels.size)
    if inside.sum() < MIN_OVERLAP * smaller:
        return 0.0
    x, y = warped[inside], b.pixels[inside].astype(np.float32)
    spread = x.std() * y.std()
    if spread < 1e-6:  # flat overlap: nothing to compare
        return 0.0
    return float(((x - x.mean()) * (y - y.mean())).mean() / spread)


def same_shot(a: Features, b: Features, b_mirrored: Features) -> float | None:
    """The correlation of `a` with `b` or with `b` mirrored, whichever aligns, if it shows one shot."""
    best = max(correlation(a, b), correlation(a, b_mirrored))
    return best if best >= MIN_CORRELATION else None


_LOCAL = threading.local()


def _orb(cv2: Any) -> Any:
    """One ORB detector per thread (creating one costs more than using it on a small image, and one
    detector is not safe to share between threads)."""
    if not hasattr(_LOCAL, "orb"):
        _LOCAL.orb = cv2.ORB_create(nfeatures=FEATURES)
    return _LOCAL.orb
