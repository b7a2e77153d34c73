"""The ray executor's overhead: the same CPU pipeline with `--executor local` and `--executor ray`.

`load >> resize (1024 px) >> save` over real photos, each executor on a fresh workspace, in this one
process: local, then ray, then local again (the local figure is the mean of the two, so a machine
getting busier or quieter during the run does not favour one side). Ray's start-up is timed apart: it
is paid once per driver, not per image.
A cached re-run is timed too: the driver filters hits, so Ray should cost nothing there.

    python benchmarks/scale.py                       # ../shared/data/dreambooth if present
    python benchmarks/scale.py --photos examples/photos

The GPU half of the issue's measurement (recaption with vLLM and dummy weights against a synchronous
batch loop) needs a GPU machine; it is not run here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from captionary import Load, Resize, Save, Workspace

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"


def timed_runs(root: Path, photos: Path, executor: str, tag: str = "") -> tuple[float, float, int]:
    def pipeline():
        return Load(photos) >> Resize(max_edge=1024) >> Save(root / f"out-{executor}{tag}")

    with Workspace(root / f"ws-{executor}{tag}") as ws:
        start = time.perf_counter()
        summary = ws.run(pipeline(), executor=executor, progress=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        ws.run(pipeline(), executor=executor, progress=False)
        cached = time.perf_counter() - start
    return first, cached, summary.step("save").computed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fallback = REPO / "examples" / "photos"
    parser.add_argument("--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else fallback)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    root = Path(tempfile.mkdtemp(prefix="captionary-scale-"))
    try:
        before = timed_runs(root, args.photos, "local", "-before")
        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - start
        ray_first, ray_cached, ray_count = timed_runs(root, args.photos, "ray")
        ray.shutdown()
        after = timed_runs(root, args.photos, "local", "-after")
        local_first, local_cached = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        count = before[2]
        assert ray_count == count == after[2]
        print(f"{count} photos from {args.photos}; {os.cpu_count()} cores; resize to 1024 px, save\n")
        print(f"{'run':<40}{'wall s':>9}{'images/s':>10}{'vs local':>10}")
        for label, seconds, base in [
            (f"local, first run ({before[0]:.1f}, {after[0]:.1f})", local_first, local_first),
            ("ray (local cluster), first run", ray_first, local_first),
            ("local, cached re-run", local_cached, local_cached),
            ("ray, cached re-run", ray_cached, local_cached),
        ]:
            print(f"{label:<40}{seconds:>9.2f}{count / seconds:>10.1f}{base / seconds:>9.2f}x")
        print(f"\nray.init (once per driver, not in the runs above): {startup:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
