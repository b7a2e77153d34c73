"""`DetectorSplit`: the base of the steps that split an image into crops of what a detector finds
(`split_persons`, `crop_faces`, `crop_heads`, `three_stage_split`).

A model step that fans out: the detector (steps/detect) loads once per process; each batch's images
are decoded ahead at `max_edge` (a JPEG at a reduced DCT scale); every detection above `min_score`
becomes a child item whose image is the parent's cropped to the box (a derived image: the parent's
recipe plus `crop_region`, never stored). Boxes are fractions, so detecting on a smaller copy crops
the full-size image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from captionary.core.images import to_rgb
from captionary.core.item import Item
from captionary.core.optional import require as require_module
from captionary.errors import ConfigError, ItemError
from captionary.pipeline.model_step import ImageBatchStep
from captionary.pipeline.step import Child, Outcome, checked_updates, require
from captionary.steps.detect.base import Detection, Detector, DetectorSpec, Settings, detector_spec
from captionary.steps.split.boxes import crop_child, crop_pixels

if TYPE_CHECKING:
    from PIL.Image import Image

WRITES = ("region", "width", "height", "detection")
"""What a crop child gets: its `region` in the parent, its size, and the detection that made it
(`{"label", "score", "box"}`, the box before padding, in the parent's fractions)."""


class DetectorSplit(ImageBatchStep):
    """Common parameters: `min_score` (None: the detector's default: YOLO 0.3, HOG 0.5, dlib 0),
    `iou` (NMS), `resize` (how a YOLO detector fits the image: `letterbox` or `stretch`),
    `max_edge` (the size detection runs at), `padding` (fraction of the box added on each side),
    `square`, `min_size` (px; smaller crops are skipped), `max_items` (the best ones), `labels` (keep
    only these labels of a multi-class detector), `keep_parent` (the image goes on too; by default it
    is replaced by its crops, and an image with no detection is dropped with the reason)."""

    writes: ClassVar[tuple[str, ...]] = WRITES
    cache_exclude: ClassVar[tuple[str, ...]] = ("batch_size", "threads", "providers")
    child_name: ClassVar[str] = "crop"  # children are named <parent>_<child_name><index>

    revision: str | None = None
    min_score: float | None = None
    iou: float = 0.5
    resize: Literal["letterbox", "stretch"] = "letterbox"
    max_edge: int = 1024
    padding: float = 0.0
    square: bool = False
    min_size: int = 32
    max_items: int | None = None
    labels: list[str] = field(default_factory=list)
    keep_parent: bool = False
    batch_size: int = 4
    threads: int | None = None
    providers: list[str] | None = None

    # --- building ------------------------------------------------------------------------------
    def detector_names(self) -> dict[str, str]:
        """Parameter name -> detector name, for every detector this step runs."""
        raise NotImplementedError

    def validate(self) -> None:
        require(self.min_score is None or self.min_score >= 0, self, "must be >= 0", param="min_score")
        require(0 < self.iou <= 1, self, f"must be in (0, 1]; got {self.iou}", param="iou")
        require(self.max_edge >= 64, self, f"must be >= 64; got {self.max_edge}", param="max_edge")
        require(self.padding >= 0, self, f"must be >= 0; got {self.padding}", param="padding")
        require(self.min_size >= 1, self, f"must be >= 1; got {self.min_size}", param="min_size")
        require(self.max_items is None or self.max_items >= 1, self, "must be >= 1", param="max_items")
        require(self.batch_size >= 1, self, f"must be >= 1; got {self.batch_size}", param="batch_size")
        specs: dict[str, DetectorSpec] = {}
        for param, name in self.detector_names().items():
            try:
                spec = detector_spec(name)
            except ConfigError as exc:
                require(False, self, str(exc), param=param)
            if spec.kind == "hog":
                require_module("cv2", "detect", package="opencv-python-headless<5")
            elif spec.kind in ("dlib", "dlib-hog"):
                require_module("dlib", "faces", package="dlib-bin")
            else:
                require_module("onnxruntime", "detect")
            specs[param] = spec
        self.specs = specs  # the checked detectors, by parameter

    @property
    def settings(self) -> Settings:
        providers = tuple(self.providers) if self.providers else None
        return Settings(self.min_score, self.iou, self.resize, self.revision, providers, self.threads)

    def model_id(self) -> str:
        return self.fingerprint

    @cached_property
    def fingerprint(self) -> str:
        settings = self.settings
        return ";".join(f"{param}={spec.identity(settings)}" for param, spec in self.specs.items())

    # --- running -------------------------------------------------------------------------------
    def load_model(self) -> dict[str, Detector]:
        settings = self.settings
        return {param: spec.open(settings) for param, spec in self.specs.items()}

    def draft_scale(self, width: int, height: int) -> float:
        return self.max_edge / max(width, height)

    def prepare(self, image: Image, item: Item) -> Image:
        rgb = to_rgb(image)
        if max(rgb.size) > self.max_edge:
            rgb = rgb.copy() if rgb is image else rgb  # thumbnail() works in place: not on the item's pixels
            rgb.thumbnail((self.max_edge, self.max_edge))
        return rgb

    def batch_outcomes(self, items: Sequence[Item]) -> list[Outcome]:
        detectors: dict[str, Detector] = self.loaded()
        outcomes = []
        for item, image in zip(items, self.inputs(items)):
            children = self.children(item, image, detectors)
            self._check(children)
            if self.keep_parent:
                outcomes.append(Outcome(children=children))
            else:
                reason = f"split into {len(children)} items" if children else self.nothing_found()
                outcomes.append(Outcome(dropped=reason, children=children))
        return outcomes

    def _check(self, children: list[Child]) -> None:
        for child in children:
            checked_updates(self, child.props)
            self._check(getattr(child, "children", None) or [])

    def apply_batch(self, items: Sequence[Item]) -> list[dict[str, Any] | None]:
        raise NotImplementedError  # batch_outcomes makes children instead

    def children(self, item: Item, image: Image, detectors: dict[str, Detector]) -> list[Child]:
        """The children of one item, from its (downscaled) image."""
        raise NotImplementedError

    def nothing_found(self) -> str:
        return f"no {self.child_name} found"

    # --- one stage: detections -> crop children --------------------------------------------------
    def detect(self, detector: Detector, image: Image) -> list[Detection]:
        """The detections to crop: labels kept, best first, at most `max_items`."""
        found = [d for d in detector.detect(image) if not self.labels or d.label in self.labels]
        found.sort(key=lambda d: -d.score)
        return found[: self.max_items] if self.max_items else found

    def crops(
        self,
        detections: list[Detection],
        width: int,
        height: int,
        name: str,
        extra: dict[str, Any] | None = None,
    ) -> list[tuple[Child, tuple[int, int, int, int]]]:
        """Children cropping each detection out of a `width` x `height` parent (with their pixel boxes);
        crops smaller than `min_size` are skipped."""
        out = []
        for index, detection in enumerate(detections):
            pixels = crop_pixels(detection.box, width, height, self.padding, self.square)
            left, top, right, bottom = pixels
            if min(right - left, bottom - top) < self.min_size:
                continue
            props = {"detection": detection.as_json(), **(extra or {})}
            out.append((crop_child(f"{name}{index}", pixels, width, height, props, f"{name}{index}"), pixels))
        return out


class OneDetectorSplit(DetectorSplit):
    """A split with one detector (`detector`): each detection above the floor is a child."""

    detector: str = ""

    def detector_names(self) -> dict[str, str]:
        return {"detector": self.detector}

    def children(self, item: Item, image: Image, detectors: dict[str, Detector]) -> list[Child]:
        width, height = parent_size(item)
        found = self.detect(detectors["detector"], image)
        return [child for child, _ in self.crops(found, width, height, self.child_name)]


def parent_size(item: Item) -> tuple[int, int]:
    """The parent's current width and height (what a crop child's region is a fraction of)."""
    width, height = item.get("width"), item.get("height")
    if not isinstance(width, int) or not isinstance(height, int):
        raise ItemError(f"{item.name}: no width/height properties to crop against")
    return width, height
