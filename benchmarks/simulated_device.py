"""A stand-in accelerator for measuring how well captionary feeds a model stage, on a machine without one.

`SimulatedDevice` is a captionary backend whose `generate` takes `seconds_per_image` of wall time per
image without using the CPU (it sleeps, as a CPU thread waiting on a GPU does), then answers a fixed
caption. Everything around it is the real `caption` step: images decoded and downscaled to
`max_image_edge` by its `prefetch`, batches, caching, commits. The share of the run's wall time the
"device" spent busy is then the figure of merit: 100% means it never waited for the CPU.

Named by import path, so pool workers and Ray actors can load it: `backend="simulated_device:SimulatedDevice"`
with this folder on PYTHONPATH.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from captionary.backends import Backend, Request, Result

NAME = "simulated_device:SimulatedDevice"


class SimulatedDevice(Backend):
    name: ClassVar[str] = "simulated_device"
    options: ClassVar[dict[str, Any]] = {"seconds_per_image": 0.02, "log": None}
    default_max_image_edge: ClassVar[int | None] = 512

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        start = time.time()
        time.sleep(self.settings["seconds_per_image"] * sum(len(r.images) for r in requests))
        if self.settings["log"]:  # when the device worked: "start end" per batch
            with open(self.settings["log"], "a") as log:
                log.write(f"{start} {time.time()}\n")
        return [Result(["a photo"], ["stop"], prompt_tokens=1, completion_tokens=2) for _ in requests]


def busy_once_started(log: str) -> float:
    """The device's busy share from its first batch's start to its last batch's end."""
    with open(log) as lines:
        spans = [tuple(map(float, line.split())) for line in lines]
    return sum(end - start for start, end in spans) / (max(e for _, e in spans) - min(s for s, _ in spans))
