"""Steps the Ray tests send to Ray workers (importable there through PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from PIL import ImageStat

from captionary import BatchStep


class TRayMeanColour(BatchStep):
    """A stand-in model: the mean colour of each image; every setup is logged to a file."""

    name: ClassVar[str] = "t_ray_mean_colour"
    writes: ClassVar[tuple[str, ...]] = ("mean",)

    log: str
    batch_size: int = 4

    def setup(self) -> None:
        with Path(self.log).open("a") as f:
            f.write("setup\n")

    def teardown(self) -> None:
        with Path(self.log).open("a") as f:
            f.write("teardown\n")

    def prefetch(self, items) -> None:
        with Path(self.log).open("a") as f:
            f.write(f"prefetch {len(items)}\n")

    def apply_batch(self, items):
        out = []
        for item in items:
            if item.name == "cat/04":
                raise ValueError("this image breaks the model")
            mean = ImageStat.Stat(item.image.convert("RGB").resize((8, 8))).mean
            out.append({"mean": [round(value, 3) for value in mean]})
        return out
