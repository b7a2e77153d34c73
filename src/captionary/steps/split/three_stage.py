"""`three_stage_split`: person, then upper body (half-body) within each person, then head within each
half-body; each crop a new item, the later ones children of the earlier (waifuc's
ThreeStageSplitAction). Each stage detects inside the previous stage's crop."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from captionary.pipeline.step import Child, require
from captionary.steps.split.detected import WRITES, DetectorSplit, parent_size
from captionary.steps.transforms.region import pixel_box

if TYPE_CHECKING:
    from PIL.Image import Image

    from captionary.core.item import Item
    from captionary.steps.detect.base import Detector

ANIME = "deepghs/anime_{0}_detection/{0}_detect_{1}"
STAGES = ("person", "halfbody", "head")


class ThreeStageSplit(DetectorSplit):
    """Split into persons, their upper bodies and their heads, each a new item inside the previous.

    Children, grandchildren and great-grandchildren, each with `split_stage` (`person`, `halfbody` or
    `head`). `person`,
    `halfbody`, `head` name the detectors (deepghs' anime YOLO models from the hub by default); a
    stage set to null is skipped (the next one detects in the previous crop, or in the whole image)."""

    name: ClassVar[str] = "three_stage_split"
    version: ClassVar[int] = 1
    writes: ClassVar[tuple[str, ...]] = (*WRITES, "split_stage")
    child_name: ClassVar[str] = "person"

    person: str | None = ANIME.format("person", "v1.3_s")
    halfbody: str | None = ANIME.format("halfbody", "v1.0_s")
    head: str | None = ANIME.format("head", "v2.0_s")

    def validate(self) -> None:
        super().validate()
        require(bool(self.specs), self, "give at least one of person, halfbody, head")

    def detector_names(self) -> dict[str, str]:
        named = {stage: getattr(self, stage) for stage in STAGES}
        return {stage: name for stage, name in named.items() if name}

    def nothing_found(self) -> str:
        return f"no {' / '.join(self.detector_names())} found"

    def children(self, item: Item, image: Image, detectors: dict[str, Detector]) -> list[Child]:
        width, height = parent_size(item)
        stages = [stage for stage in STAGES if stage in detectors]
        return self._stage(stages, image, width, height, detectors)

    def _stage(
        self, stages: list[str], image: Image, width: int, height: int, detectors: dict[str, Detector]
    ) -> list[Child]:
        """Children of one crop (`image`: what the detector sees; `width` x `height`: the crop's real
        size), each with the next stages' children inside it."""
        if not stages:
            return []
        stage, later = stages[0], stages[1:]
        found = self.detect(detectors[stage], image)
        out = []
        crops = self.crops(found, width, height, stage, {"split_stage": stage})
        for child, (left, top, right, bottom) in crops:
            inner = image.crop(pixel_box(child.props["region"], image.width, image.height))
            child.children = self._stage(later, inner, right - left, bottom - top, detectors) or None
            out.append(child)
        return out
