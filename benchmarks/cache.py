"""Cache benchmark: the fully cached re-run of `load >> filter_by_size >> resize >> save` over N images.

Prints, measured in this one run on this machine:
  * the first run (captionary, all cores) next to a plain single-process Pillow loop doing the same
    work (size filter, resize, JPEG out);
  * the fully cached re-run: the first one, and the best of three (goal: under 1 s for 20,000 images);
  * microseconds per item for each step on the cached re-run (the driver's own per-step timing);
  * the same re-run through the CLI (`captionary run`), interpreter start-up and imports included,
    wall and CPU seconds, with the bytecode cache an installed package has and without it
    (PYTHONDONTWRITEBYTECODE=1 and no __pycache__ beside the sources: captionary's modules are
    compiled at each start; this machine's environment sets it), next to the bare import and
    `python -c pass`; and `-X importtime`'s cumulative figure for `import captionary.cli`.

    python benchmarks/cache.py            # 20,000 images (about 2 minutes on 2 cores)
    python benchmarks/cache.py --n 2000   # quicker
    python benchmarks/cache.py --baseline /tmp/old/src   # the CLI rows of another source tree too
                                                         # (e.g. a `git worktree` of main), interleaved
    python benchmarks/cache.py --first-reps 3 ...        # the first run through the CLI next to the
                                                         # plain loop, interleaved (and the baseline's)
    python benchmarks/cache.py --tmp /dev/shm ...        # write on tmpfs: this machine's ext4 has no
                                                         # journal, and there each new file skips, one
                                                         # by one, the inodes deleted in the last minutes
                                                         # (kernel `recently_deleted`), so any earlier
                                                         # run's deletions slow the file-creating runs
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from captionary import FilterBySize, Load, Resize, Save, Workspace

MIN_EDGE, MAX_EDGE = 48, 64


def make_images(folder: Path, n: int) -> None:
    """n distinct small noisy JPEGs (96x72; every 10th is 40x30 so the size filter drops it)."""
    for i in range(n):
        size = (40, 30) if i % 10 == 0 else (96, 72)
        noise = random.Random(i).randbytes(size[0] * size[1] * 3)
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.frombytes("RGB", size, noise).save(sub / f"{i:06d}.jpg", quality=90)


def plain_pillow(src: Path, out: Path) -> int:
    """The baseline: one process, one loop, the same work."""
    written = 0
    for path in sorted(src.rglob("*.jpg")):
        with Image.open(path) as image:
            if min(image.size) < MIN_EDGE:
                continue
            image.thumbnail((MAX_EDGE, MAX_EDGE), Image.Resampling.LANCZOS)
            target = out / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            image.save(target, quality=95)
            written += 1
    return written


CLI_LABELS = {
    "bytecode": "captionary run (bytecode cached, as installed)",
    "no bytecode": "captionary run, PYTHONDONTWRITEBYTECODE=1",
    "import": "python -c 'import captionary.cli' (bytecode)",
    "python": "python -c pass (interpreter start-up)",
}
BASELINE = " [baseline]"


def _environments(root: Path, baseline: str | None) -> dict[str, dict[str, str]]:
    """The environment of the measured sources ("") and of the baseline's (BASELINE), if any: with a
    bytecode cache under `root`, and ("... no bytecode") without one written."""
    trees = {"": os.environ.get("PYTHONPATH", "")} | ({BASELINE: baseline} if baseline else {})
    envs = {}
    for suffix, path in trees.items():
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        if path:
            env["PYTHONPATH"] = path
        envs[suffix] = {**env, "PYTHONPYCACHEPREFIX": str(root / "pycache")}
        envs[suffix + " no bytecode"] = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
    return envs


def cli_runs(
    root: Path, reps: int, baseline: str | None = None
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU (user + sys) seconds of the cached re-run through the CLI, interleaved: with the
    bytecode cache an installed package has, and without it (sources compiled at every start, as
    under PYTHONDONTWRITEBYTECODE=1), next to the bare import and the interpreter's own start-up;
    with `baseline` (another source tree), its run and import rows too, in the same rounds."""
    envs = _environments(root, baseline)
    commands = {}
    for suffix in ("", BASELINE) if baseline else ("",):
        # each tree its own workspace, warmed by a run of that tree: another version may key its cache
        # differently (a newer one may resolve image steps to another engine), so a shared workspace
        # would recompute at every switch
        run = [sys.executable, "-m", "captionary.cli", "run", _cached_pipeline(root, suffix), "--no-progress"]
        for _ in range(2):  # the first fills the tree's cache; the second must compute nothing
            done = subprocess.run(run, cwd=root, env=envs[suffix], capture_output=True, text=True, check=True)
        _computed_nothing(done.stdout)
        commands["bytecode" + suffix] = (run, envs[suffix])
        commands["no bytecode" + suffix] = (run, envs[suffix + " no bytecode"])
        commands["import" + suffix] = ([sys.executable, "-c", "import captionary.cli"], envs[suffix])
        subprocess.run(commands["import" + suffix][0], env=envs[suffix], check=True)  # writes bytecode
    commands["python"] = ([sys.executable, "-c", "pass"], envs[""])
    runs: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in commands}
    for _ in range(reps):
        for label, (command, environment) in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, cwd=root, env=environment, capture_output=True, check=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs[label][0].append(wall)
            runs[label][1].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return runs


def _cached_pipeline(root: Path, suffix: str) -> str:
    """The pipeline file the CLI rows of one source tree run (its own workspace and output folder)."""
    tag = "-baseline" if suffix else ""
    (root / f"bench{tag}.yaml").write_text(
        f"workspace: ws{tag}\nsteps:\n  - load: {{path: photos}}\n"
        f"  - filter_by_size: {{min_edge: {MIN_EDGE}}}\n  - resize: {{max_edge: {MAX_EDGE}}}\n"
        f"  - save: {{path: out{tag}}}\n"
    )
    return f"bench{tag}.yaml"


def _computed_nothing(table: str) -> None:
    """Refuse to time a 'cached' run that computes: every step row's `computed` column must be 0."""
    for line in table.splitlines():
        cells = line.split()
        if len(cells) == 7 and cells[1].isdigit() and cells[3] != "0":
            raise SystemExit(f"the cached run computed something, so it would not measure a cache: {line}")


def first_runs(root: Path, src: Path, reps: int, baseline: str | None) -> dict[str, list[float]]:
    """Wall seconds of the first run through the CLI (start-up included; a new workspace and output
    folder each time) next to the plain loop, `reps` interleaved rounds; with `baseline`, that source
    tree's first run in the same rounds. Every run's files are kept until all rounds are done: on an
    ext4 without a journal (this machine) a new file skips, one by one, the inodes deleted in the
    last ~30 s, so deleting a run's files just before the next would slow the next one's creations."""
    envs = _environments(root, baseline)
    trees = {"captionary first run (CLI)": envs[""]}
    if baseline:
        trees["captionary first run (CLI)" + BASELINE] = envs[BASELINE]
    plain = "plain Pillow loop, 1 process"
    walls: dict[str, list[float]] = {plain: [], **{label: [] for label in trees}}
    for rep in range(reps):
        start = time.perf_counter()
        plain_pillow(src, root / f"plain-{rep}")
        walls[plain].append(time.perf_counter() - start)
        for n, (label, env) in enumerate(trees.items()):
            (root / f"first-{rep}-{n}.yaml").write_text(
                f"workspace: ws-first-{rep}-{n}\nsteps:\n  - load: {{path: photos}}\n"
                f"  - filter_by_size: {{min_edge: {MIN_EDGE}}}\n  - resize: {{max_edge: {MAX_EDGE}}}\n"
                f"  - save: {{path: out-first-{rep}-{n}}}\n"
            )
            command = [sys.executable, "-m", "captionary.cli", "run", f"first-{rep}-{n}.yaml"]
            start = time.perf_counter()
            subprocess.run([*command, "--no-progress"], cwd=root, env=env, capture_output=True, check=True)
            walls[label].append(time.perf_counter() - start)
    return walls


def import_total_ms(env: dict[str, str]) -> float:
    """`python -X importtime -c 'import captionary.cli'`: the cumulative import time of the CLI module."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import captionary.cli"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = [x for x in done.stderr.splitlines() if x.rstrip().endswith("| captionary.cli")]
    return int(line.split("|")[1]) / 1e3


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of the CLI runs")
    parser.add_argument(
        "--baseline", help="another captionary source tree (its src/) to time the CLI rows of"
    )
    parser.add_argument(
        "--first-reps",
        type=int,
        default=0,
        help="interleaved rounds of the plain loop and the CLI's first run (and the baseline's)",
    )
    parser.add_argument("--tmp", type=Path, help="where the runs write (default: the system temp folder)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-bench-", dir=args.tmp))
    try:
        src = root / "photos"
        src.mkdir()
        make_images(src, args.n)
        pipeline = (
            Load(src) >> FilterBySize(min_edge=MIN_EDGE) >> Resize(max_edge=MAX_EDGE) >> Save(root / "out")
        )

        baseline_s, written = timed(lambda: plain_pillow(src, root / "plain"))
        with Workspace(root / "ws") as ws:
            first_s, first = timed(lambda: ws.run(pipeline, progress=False))
            assert first.step("save").computed == written, (first.table(), written)
            reruns = [timed(lambda: ws.run(pipeline, progress=False)) for _ in range(3)]
        for _, summary in reruns:
            assert summary.computed == 0, summary.table()
        best_s, best = min(reruns, key=lambda r: r[0])

        cli = cli_runs(root, args.reps, args.baseline)
        firsts = first_runs(root, src, args.first_reps, args.baseline) if args.first_reps else {}
        cli_s = statistics.median(cli["bytecode"][0])

        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        envs = _environments(root, args.baseline)
        suffixes = ("", BASELINE) if args.baseline else ("",)
        imports: dict[str, list[float]] = {suffix: [] for suffix in suffixes}
        for _ in range(args.reps):
            for suffix in suffixes:
                imports[suffix].append(import_total_ms(envs[suffix]))
        print(
            f"{args.n} images, {os.cpu_count()} cores, load average {load}; "
            f"load >> filter_by_size >> resize >> save; files under {root.parent}\n"
        )
        print(f"{'run':<46}{'wall s':>9}{'vs plain':>10}")
        rows = [
            ("plain Pillow loop, 1 process (baseline)", baseline_s),
            ("captionary first run (all cores)", first_s),
            ("captionary cached re-run, first (API)", reruns[0][0]),
            ("captionary cached re-run, best of 3 (API)", best_s),
            ("captionary cached re-run (CLI, incl. start-up)", cli_s),
        ]
        for label, seconds in rows:
            print(f"{label:<46}{seconds:>9.3f}{seconds / baseline_s:>10.3f}")
        if firsts:
            plain = statistics.median(firsts["plain Pillow loop, 1 process"])
            print(f"\nfirst run, {args.first_reps} interleaved rounds (load average {load})\n")
            print(f"{'':<52}{'wall min':>9}{'median':>9}{'plain / this':>14}")
            for label, walls in firsts.items():
                median = statistics.median(walls)
                print(f"{label:<52}{min(walls):>9.3f}{median:>9.3f}{plain / median:>13.2f}x")
        print("\ncached re-run (best), driver time per step\n")
        print(f"{'step':<18}{'items in':>10}{'ms':>9}{'us/item':>9}")
        for stats in best.steps:
            print(
                f"{stats.name:<18}{stats.n_in:>10}{stats.seconds * 1e3:>9.1f}"
                f"{stats.seconds / max(1, stats.n_in) * 1e6:>9.1f}"
            )
        other = best_s - sum(s.seconds for s in best.steps)
        print(f"{'(run set-up, item states, commit)':<37}{other * 1e3:>9.1f}")
        print(f"\ncached re-run through the CLI, {args.reps} interleaved repetitions (load average {load})")
        width = 60 if args.baseline else 48
        print(f"{'':<{width}}{'wall min':>9}{'median':>9}{'CPU min':>9}{'median':>9}")
        for label, (walls, cpus) in cli.items():
            name = CLI_LABELS[label.removesuffix(BASELINE)] + (BASELINE if label.endswith(BASELINE) else "")
            print(
                f"{name:<{width}}{min(walls):>9.3f}{statistics.median(walls):>9.3f}"
                f"{min(cpus):>9.3f}{statistics.median(cpus):>9.3f}"
            )
        if args.baseline:
            print(f"{'':<{width}}{'wall, median baseline / median this':>36}")
            for label in ("bytecode", "no bytecode", "import"):
                ratio = statistics.median(cli[label + BASELINE][0]) / statistics.median(cli[label][0])
                print(f"{CLI_LABELS[label]:<{width}}{ratio:>35.2f}x")
        for suffix, totals in imports.items():
            print(
                f"python -X importtime -c 'import captionary.cli' (bytecode cached){suffix}: captionary.cli "
                f"cumulative min {min(totals):.0f} ms, median {statistics.median(totals):.0f} ms"
            )
        per_20k = cli_s * 20_000 / args.n
        verdict = "met" if per_20k < 1.0 else "NOT met"
        print(
            f"\ngoal: the CLI's cached re-run of 20,000 images under 1 s, start-up included -> {verdict} "
            f"(median {cli_s:.3f} s for {args.n}; {per_20k:.3f} s per 20,000; the API's best "
            f"{best_s:.3f} s)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
