"""Pairwise ranking: how many human actions reach a Kendall tau of 0.8 and 0.9, and the app's latency.

1. Quality. `--items` items with hidden true scores (standard normal) and two simulated annotators:
   - flip: answers "which is better" by the truth with 5% of answers flipped (`--flip`); scores an
     item 1-5 by the quintile of its truth, 5% of scores one level off;
   - perceptual (Thurstone): every judgement sees truth + N(0, `--sigma`); a pair is answered by what
     it sees, a score is the quintile of what it sees. The default sigma flips 5% of random pairs and
     is harder on close pairs, which active choice asks most.
   Compared at the same number of human actions (one action = one answer, or one item scored):
   - active pairs: `core.ranking.choose_pairs` on the current Bradley-Terry fit, `--batch` pairs per
     fit (the app asks from a queue of pairs the same way);
   - random pairs: uniformly random unanswered pairs, the same fit;
   - absolute 1-5: each action scores one item (round robin, so each is scored again after every
     item was scored once); an item's mean score is its rank. Ties count as neither right nor wrong
     (tau-a): scores that never vary cannot rank within a level.
   Every method is checked every `--every` actions; the table shows the first checkpoint that reached
   the tau (mean over `--seeds` seeds, each seed's own truth), ">N" when it did not within `--max`.
2. Latency on a live server (uvicorn, the real app), interleaved: a rank answer (PUT, one committed
   transaction) against a human_filter decision (the baseline), on the same workspace; and the
   next-pairs request (a refit over `--items` items and the choice).

    python benchmarks/rank.py                       # 500 items, 3 seeds: a few minutes on 2 cores
    python benchmarks/rank.py --items 100 --max 1500 --seeds 1   # quick
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per process: on a loaded machine BLAS threads fight

import argparse  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from captionary import HumanFilter, HumanRank, Workspace  # noqa: E402
from captionary.core import ranking  # noqa: E402
from captionary.review.decisions import DecisionStore, TaskItem  # noqa: E402
from captionary.review.server import create_app  # noqa: E402
from review import Timed, serve  # noqa: E402

THRESHOLDS = (0.8, 0.9)


class Annotator:
    """A simulated person: `flip` (wrong answers at a fixed rate) or `perceptual` (noisy perception)."""

    def __init__(self, kind: str, truth: np.ndarray, args: argparse.Namespace, rng: np.random.Generator):
        self.kind, self.truth, self.args, self.rng = kind, truth, args, rng
        self.edges = np.quantile(truth, [0.2, 0.4, 0.6, 0.8])

    def seen(self, item: int) -> float:
        noise = self.rng.normal(0, self.args.sigma) if self.kind == "perceptual" else 0.0
        return self.truth[item] + noise

    def prefers(self, i: int, j: int) -> float:
        """1.0 if it answers that i is better than j."""
        better = self.seen(i) > self.seen(j)
        if self.kind == "flip" and self.rng.random() < self.args.flip:
            better = not better
        return float(better)

    def score(self, item: int) -> int:
        level = 1 + int(np.searchsorted(self.edges, self.seen(item)))
        if self.kind == "flip" and self.rng.random() < self.args.flip:
            level = min(5, max(1, level + (1 if self.rng.random() < 0.5 else -1)))
        return level


def pairwise(person: Annotator, args: argparse.Namespace, active: bool) -> dict[int, float]:
    """tau at each checkpoint for active or random pairs."""
    truth, rng = person.truth, person.rng
    n = len(truth)
    answered: set[tuple[int, int]] = set()
    rows: list[tuple[int, int, float]] = []
    fit = ranking.fit(n, *ranking.as_arrays(n, []))
    taus: dict[int, float] = {}
    for checkpoint in range(args.every, args.max + 1, args.every):
        while len(rows) < checkpoint:
            count = min(args.batch, checkpoint - len(rows))
            if active:
                pairs = ranking.choose_pairs(fit, answered, count=count, seed=rng)
            else:
                pairs = []
                while len(pairs) < count:
                    pair = ranking.pair_key(*map(int, rng.choice(n, 2, replace=False)))
                    if pair not in answered and pair not in pairs:
                        pairs.append(pair)
            for i, j in pairs:
                rows.append((i, j, person.prefers(i, j)))
                answered.add((i, j))
            if active:
                fit = ranking.fit(n, *ranking.as_arrays(n, rows), start=fit.scores)
        if not active:
            fit = ranking.fit(n, *ranking.as_arrays(n, rows), start=fit.scores)
        taus[checkpoint] = ranking.kendall_tau(fit.scores, truth)
        if taus[checkpoint] >= max(THRESHOLDS) + 0.02:
            break
    return taus


def absolute(person: Annotator, args: argparse.Namespace) -> dict[int, float]:
    """tau at each checkpoint for 1-5 scores of one item per action (round robin)."""
    n = len(person.truth)
    total, count = np.zeros(n), np.zeros(n)
    order = person.rng.permutation(n)
    taus: dict[int, float] = {}
    for action in range(1, args.max + 1):
        item = order[(action - 1) % n]
        total[item] += person.score(item)
        count[item] += 1
        if action % args.every == 0:
            mean = np.where(count > 0, total / np.maximum(count, 1), 3.0)  # unscored: the middle
            taus[action] = ranking.kendall_tau(mean, person.truth)
    return taus


def first_reaching(runs: list[dict[int, float]], threshold: float, limit: int) -> str:
    """The first checkpoint where the seeds' mean tau reaches `threshold`."""
    checkpoints = sorted(set().union(*runs))
    for checkpoint in checkpoints:
        values = [run.get(checkpoint, max(run.values())) for run in runs]  # a stopped run stays at its best
        if np.mean(values) >= threshold:
            return str(checkpoint)
    return f">{limit}"


def quality(args: argparse.Namespace) -> None:
    methods = ("active pairs", "random pairs", "absolute 1-5")
    print(
        f"\n{args.items} items; annotators: flip ({args.flip:.0%} of answers flipped, of scores one "
        "level off), "
        f"perceptual (truth + N(0, {args.sigma}) per judgement); mean of {args.seeds} seeds; "
        f"human actions to reach the tau (checked every {args.every})"
    )
    header = f"{'annotator':<12}{'method':<16}" + "".join(f"{'tau ' + str(t):>10}" for t in THRESHOLDS)
    header += "".join(f"{'tau@' + str(c):>11}" for c in args.report) + f"{'cpu s':>8}"
    print(header)
    for kind in ("flip", "perceptual"):
        results: dict[str, list[dict[int, float]]] = {name: [] for name in methods}
        seconds = dict.fromkeys(methods, 0.0)
        for seed in range(args.seeds):
            truth = np.random.default_rng(seed).normal(size=args.items)
            for name in methods:  # interleaved: each seed runs every method
                person = Annotator(kind, truth, args, np.random.default_rng([seed, methods.index(name)]))
                started = time.perf_counter()
                if name == "absolute 1-5":
                    results[name].append(absolute(person, args))
                else:
                    results[name].append(pairwise(person, args, active=name == "active pairs"))
                seconds[name] += time.perf_counter() - started
        for name, runs in results.items():
            row = f"{kind:<12}{name:<16}" + "".join(
                f"{first_reaching(runs, t, args.max):>10}" for t in THRESHOLDS
            )
            for checkpoint in args.report:
                values = [run.get(checkpoint, max(run.values())) for run in runs]
                row += f"{np.mean(values):>11.3f}"
            print(row + f"{seconds[name]:>8.1f}", flush=True)
    rng = np.random.default_rng(0)
    a, b, noise = rng.normal(size=(3, 100_000))
    flips = np.mean((a > b) != (a + args.sigma * noise > b + args.sigma * rng.normal(size=100_000)))
    print(f"(the perceptual annotator flips {flips:.1%} of random pairs)")


def latency(args: argparse.Namespace, root: Path) -> None:
    """Rank answers vs filter decisions (interleaved) on one live server, and next-pair requests."""
    with Workspace(root / "ws") as ws:
        db_path = ws.db_path
    store = DecisionStore(db_path)
    rank, keep = HumanRank(budget=10**6), HumanFilter()
    store.register_task("rank", "rank", {"step": rank.describe(), **rank.task_config()})
    store.register_task("filter", "filter", {"step": keep.describe()})
    ids = [secrets.token_hex(32) for _ in range(args.items)]
    rows = [TaskItem(i, 0, i, f"n{n}", {}) for n, i in enumerate(ids)]
    store.register_items("rank", rows, 1)
    store.register_items("filter", rows, 1)
    store.close()
    token = secrets.token_urlsafe(24)
    timed = Timed(create_app(db_path.parent, token))
    server, port = serve(timed)
    import httpx

    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"})
    rng = np.random.default_rng(0)
    truth = rng.normal(size=len(ids))
    index = {item: k for k, item in enumerate(ids)}
    trips: dict[str, list[float]] = {"filter decision (baseline)": [], "rank answer": []}
    served: dict[str, list[float]] = {name: [] for name in trips}
    choose: list[float] = []
    for step in range(args.answers):
        started = time.perf_counter()
        found = client.get("/api/rank/rank?n=1").json()
        if step % 10 == 0:  # every tenth: a refit was needed since the previous answer
            choose.append(time.perf_counter() - started)
        [pair] = found["pairs"]
        left, right = pair["left"]["id"], pair["right"]["id"]
        winner = "left" if truth[index[left]] > truth[index[right]] else "right"
        for name in trips if step % 2 else reversed(list(trips)):  # alternate which goes first
            timed.times.clear()
            started = time.perf_counter()
            if name == "rank answer":
                reply = client.put(
                    "/api/rank/rank/pairs", json={"left": left, "right": right, "winner": winner}
                )
            else:
                reply = client.put(f"/api/tasks/filter/items/{ids[step % len(ids)]}", json={"value": "keep"})
            trips[name].append(time.perf_counter() - started)
            served[name].extend(timed.times)
            assert reply.status_code == 200, reply.text
    server.should_exit = True
    (saved,) = sqlite3.connect(db_path).execute("SELECT count(*) FROM comparisons").fetchone()
    assert saved == args.answers
    print(
        f"\n{args.answers} answers on a live server, {args.items} items (WAL, synchronous=FULL), interleaved"
    )
    print(f"{'measure':<52}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name in trips:
        for label, values in ((f"client: {name} round trip", trips[name]), (f"server: {name}", served[name])):
            cuts = statistics.quantiles(values, n=100, method="inclusive")
            print(f"{label:<52}{cuts[49] * 1000:9.2f}{cuts[98] * 1000:9.2f}{max(values) * 1000:9.2f}")
    cuts = statistics.quantiles(choose, n=100, method="inclusive")
    label = "next pair (refit + choice), client"
    print(f"{label:<52}{cuts[49] * 1000:9.2f}{cuts[98] * 1000:9.2f}{max(choose) * 1000:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--sigma", type=float, default=0.158)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--max", type=int, default=7500)
    parser.add_argument("--report", type=int, nargs="*", default=[1000, 2500])
    parser.add_argument("--answers", type=int, default=300)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    if args.seeds:  # --seeds 0: the latency part only
        quality(args)
    root = Path(tempfile.mkdtemp(prefix="captionary-rank-bench-"))
    try:
        latency(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
