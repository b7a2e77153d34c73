"""The ray executor's overhead: the same CPU pipeline with `--executor local` and `--executor ray`.

`load >> resize (1024 px) >> save` over real photos, each executor on a fresh workspace, in this one
process: local, then ray, then local again (the local figure is the mean of the two, so a machine
getting busier or quieter during the run does not favour one side). Ray's start-up is timed apart: it
is paid once per driver, not per image.
A cached re-run is timed too: the driver filters hits, so Ray should cost nothing there.

    python benchmarks/scale.py                       # ../shared/data/dreambooth if present
    python benchmarks/scale.py --photos examples/photos

Feeding (`--part feeding`): does the model stage wait for the CPU? A stand-in device
(benchmarks/simulated_device.py: `--device-ms` of wall time per image, no CPU used, as a GPU) behind
the real `caption` step, on photos already ingested: the synchronous loop a person writes (decode and
downscale a batch, then run the model on it) against captionary's local and ray executors, which
decode the next batch while the device works on the current one. "device busy" is the device's share
of the wall time (100% = never idle).

The GPU half of the issue's measurement (recaption with vLLM and dummy weights against a synchronous
batch loop) is benchmarks/recaption.py on a GPU machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from captionary import Caption, Load, Resize, Save, Workspace
from captionary.core.item import decode_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
BATCH = 16
EDGE = 512


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


def overhead(root: Path, photos: Path, ray) -> None:
    before = timed_runs(root, photos, "local", "-before")
    start = time.perf_counter()
    start_ray(ray)
    startup = time.perf_counter() - start
    ray_first, ray_cached, ray_count = timed_runs(root, photos, "ray")
    ray.shutdown()
    after = timed_runs(root, photos, "local", "-after")
    local_first, local_cached = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    count = before[2]
    assert ray_count == count == after[2]
    print(f"Overhead: {count} photos from {photos}; {os.cpu_count()} cores; resize to 1024 px, save\n")
    print(f"{'run':<40}{'wall s':>9}{'images/s':>10}{'vs local':>10}")
    for label, seconds, base in [
        (f"local, first run ({before[0]:.1f}, {after[0]:.1f})", local_first, local_first),
        ("ray (local cluster), first run", ray_first, local_first),
        ("local, cached re-run", local_cached, local_cached),
        ("ray, cached re-run", ray_cached, local_cached),
    ]:
        print(f"{label:<40}{seconds:>9.2f}{count / seconds:>10.1f}{base / seconds:>9.2f}x")
    print(f"\nray.init (once per driver, not in the runs above): {startup:.1f} s\n")


def start_ray(ray) -> None:
    """A local Ray whose workers can import the stand-in device (through the environment they inherit:
    a `runtime_env` would make every worker start slower)."""
    here = str(Path(__file__).resolve().parent)
    paths = [here, str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def synchronous_loop(paths: list[Path], seconds_per_image: float, log: Path) -> float:
    """Decode and downscale a batch (as the caption step does), then run the device on it; repeat."""
    from captionary.backends import BackendConfig, Request
    from simulated_device import NAME, SimulatedDevice

    options = {"seconds_per_image": seconds_per_image, "log": str(log)}
    device = SimulatedDevice(BackendConfig(NAME, "sim", options=options))
    start = time.perf_counter()
    for first in range(0, len(paths), BATCH):
        requests = []
        for path in paths[first : first + BATCH]:
            image = decode_image(path.read_bytes(), lambda w, h: EDGE / max(w, h))
            image.thumbnail((EDGE, EDGE))
            requests.append(Request("Describe the image.", [image.convert("RGB")]))
        device.generate(requests)
    return time.perf_counter() - start


def fed_run(
    root: Path, photos: Path, executor: str, seconds_per_image: float, log: Path
) -> tuple[float, int]:
    """captionary's caption step on the stand-in device, the photos ingested beforehand (not timed)."""
    from simulated_device import NAME

    with Workspace(root / f"ws-feed-{executor}") as ws:
        ws.run(Load(photos), progress=False)
        caption = Caption(
            backend=NAME,
            model="sim",
            batch_size=BATCH,
            max_image_edge=EDGE,
            options={"seconds_per_image": seconds_per_image, "log": str(log)},
        )
        start = time.perf_counter()
        summary = ws.run(Load(photos) >> caption, executor=executor, progress=False)
        seconds = time.perf_counter() - start
    return seconds, summary.step("caption").computed


def feeding(root: Path, photos: Path, ray, device_ms: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from simulated_device import busy_once_started

    paths = sorted(p for p in photos.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    seconds_per_image = device_ms / 1000
    logs = {name: root / f"device-{name}.log" for name in ("loop", "local", "ray")}
    loop = synchronous_loop(paths, seconds_per_image, logs["loop"])
    rows = [("synchronous loop (decode, then model)", "loop", loop, len(paths))]
    rows.append(
        (
            "captionary, local executor",
            "local",
            *fed_run(root, photos, "local", seconds_per_image, logs["local"]),
        )
    )
    if ray is not None:
        start_ray(ray)
        rows.append(
            ("captionary, ray executor", "ray", *fed_run(root, photos, "ray", seconds_per_image, logs["ray"]))
        )
        ray.shutdown()
    print(
        f"Feeding: {len(paths)} photos from {photos}; {os.cpu_count()} cores; a stand-in device taking "
        f"{device_ms:g} ms per image; batches of {BATCH}, images downscaled to {EDGE} px. Device busy: "
        f"its share of the whole run, and from its first batch's start to its last batch's end\n"
    )
    print(f"{'run':<40}{'wall s':>9}{'images/s':>10}{'busy, run':>11}{'once started':>14}{'vs loop':>9}")
    for label, name, seconds, count in rows:
        assert count == len(paths), (label, count)
        busy = count * seconds_per_image / seconds
        started = busy_once_started(str(logs[name]))
        rate, ratio = count / seconds, loop / seconds
        print(f"{label:<40}{seconds:>9.2f}{rate:>10.1f}{busy:>10.0%}{started:>13.0%}{ratio:>8.2f}x")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fallback = REPO / "examples" / "photos"
    parser.add_argument("--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else fallback)
    parser.add_argument("--part", choices=["all", "overhead", "feeding"], default="all")
    parser.add_argument("--device-ms", type=float, default=20.0, help="stand-in device time per image")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    root = Path(tempfile.mkdtemp(prefix="captionary-scale-"))
    try:
        if args.part in ("all", "overhead"):
            overhead(root, args.photos, ray)
        if args.part in ("all", "feeding"):
            feeding(root, args.photos, ray, args.device_ms)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
