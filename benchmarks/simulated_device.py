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
    options: ClassVar[dict[str, Any]] = {"seconds_per_image": 0.02}
    default_max_image_edge: ClassVar[int | None] = 512

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        time.sleep(self.settings["seconds_per_image"] * sum(len(r.images) for r in requests))
        return [Result(["a photo"], ["stop"], prompt_tokens=1, completion_tokens=2) for _ in requests]
