"""YAML alias bomb benchmark: how long, and how much memory, `captionary run` spends on a 6-line
pipeline file whose aliases expand to 9**9 (387 million) values before it answers with an error.

Each code runs as a child process (`python -m captionary.cli run`), its wall time and peak memory
(`ru_maxrss` of the child) measured; the baseline is the code before the YAML limits (a checkout:
`git worktree add /tmp/h13-old <commit>`), cut off at `--cutoff` seconds and 8 GB of address space.

    python benchmarks/alias_bomb.py --baseline /tmp/h13-old
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bomb(levels: int = 9) -> str:
    text = "workspace: ws\nsteps:\n  - load: {path: .}\n"
    text += "  - set_caption:\n      template: [&a [x,x,x,x,x,x,x,x,x]"
    for previous, name in zip("abcdefghij", "bcdefghijk"[: levels - 1]):
        text += f", &{name} [{','.join(['*' + previous] * 9)}]"
    return text + "]\n"


def measure(src: Path, pipeline: Path, cutoff: float) -> tuple[float | None, float, str]:
    """(wall s or None if cut off, peak MB, the last line it printed)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "captionary.cli", "run", str(pipeline), "--no-progress"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, preexec_fn=limit, stderr=subprocess.PIPE, text=True)
    try:
        _, err = process.communicate(timeout=cutoff)
        seconds: float | None = time.perf_counter() - started
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        seconds = None
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    return seconds, peak, (err.strip().splitlines() or [""])[-1][:120]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the old code")
    parser.add_argument("--cutoff", type=float, default=300.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        pipeline = Path(folder) / "bomb.yaml"
        pipeline.write_text(bomb())
        # new first: ru_maxrss of RUSAGE_CHILDREN is the maximum over children, so the small one first
        rows = [("new", *measure(REPO / "src", pipeline, args.cutoff))]
        rows.append(("old", *measure(args.baseline / "src", pipeline, args.cutoff)))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    print(f"{'code':<5} {'wall s':>8} {'peak MB':>9}  answer")
    for label, seconds, peak, answer in rows:
        shown = f"{seconds:8.2f}" if seconds is not None else f"{'>' + str(int(args.cutoff)):>8}"
        print(f"{label:<5} {shown} {peak:9.0f}  {answer}")
    (_, new_s, new_mb, _), (_, old_s, old_mb, _) = rows
    if new_s and old_s:
        print(f"old / new: {old_s / new_s:.0f}x the time, {old_mb / new_mb:.0f}x the memory")


if __name__ == "__main__":
    main()
