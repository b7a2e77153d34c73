"""OpenCV's bundled HOG + linear SVM people detector (Dalal & Triggs), as a `Detector`.

It ships inside opencv-python-headless 4.x (BSD; OpenCV 5 moved it out of the main modules, hence the
`< 5` pin of the `detect` extra), needs no download, and finds upright, mostly whole people at least
about 128 px tall (the detection window is 64 x 128); it misses sitting or cropped people and fires
on some upright objects (measured on the DreamBooth photos: project notes in the README). Scores are
SVM margins (about 0-3); the default floor is 0.5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from captionary.steps.detect.base import Detection, Settings

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_MIN_SCORE = 0.5


class HogPeople:
    def __init__(self, settings: Settings):
        import cv2

        if not hasattr(cv2, "HOGDescriptor"):
            from captionary.errors import ConfigError

            raise ConfigError(
                f"OpenCV {cv2.__version__} has no HOG people detector (moved out in OpenCV 5): "
                "pip install 'opencv-python-headless<5'"
            )
        self.settings = settings
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image: Image) -> list[Detection]:
        import numpy as np

        from captionary.steps.detect.yolo_decode import nms

        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # BGR
        rects, weights = self.hog.detectMultiScale(pixels, winStride=(8, 8), padding=(8, 8), scale=1.05)
        floor = DEFAULT_MIN_SCORE if self.settings.min_score is None else self.settings.min_score
        if not len(rects):
            return []
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in rects], dtype=np.float64)
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        keep = scores >= floor
        boxes, scores = boxes[keep], scores[keep]
        order = nms(boxes, scores, np.zeros(len(boxes), dtype=np.int64), self.settings.iou)
        width, height = image.size
        scale = np.array([width, height, width, height], dtype=np.float64)
        return [
            Detection(tuple(float(v) for v in np.clip(boxes[i] / scale, 0, 1)), float(scores[i]), "person")
            for i in order
        ]
