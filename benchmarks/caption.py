"""Captioning throughput: captionary's `caption` step against calling each backend directly in a loop.

One function per backend (`BENCHMARKS`); each runs, in this process and on the same photos: the
backend called directly (the loop a person writes by hand), captionary's first run
(`load >> caption`, ingest included) and its cached re-run, and prints images/s and output tokens/s
with the ratio to the direct loop.

    python benchmarks/caption.py                                  # every backend that can run here
    python benchmarks/caption.py --backends openai --photos examples/photos

openai: a local OpenAI-compatible server (`api_stub.py`, asyncio, in a process of its own) answers
every request after a fixed `--latency` (default 0.1 s, like a fast hosted API) with `--tokens` words;
images go as 512 px JPEG data URLs. The caption step at concurrency 8 and 64 against the bound
min(concurrency / latency, encode rate), on full-size copies of the photos (encoding binds) and on
384 px copies (cheap to encode, so the concurrency limit binds at 8), with a bare client posting
ready bodies as the machine's ceiling for the HTTP part alone.
openai-runs: first run, cached re-run and new prompt at concurrency 8 against the backend called
directly in batches of 16.

transformers: the tests' tiny random-weight LLaVA (built offline, set to write exactly `--tokens`
tokens) on CPU, so the model's work is small and captionary's own overhead shows: `model.generate`
called directly on batches of the same 512 px images (with torch's default threads and with one
thread; the faster is the baseline) vs the `caption` step.

vllm (a CUDA GPU and `pip install vllm`): a LLaVA-1.5-7B-shaped model with random weights
(`load_format="dummy"`, its config written locally: no download), every caption exactly `--tokens`
tokens, on `--copies` variants of each photo: `LLM.chat` on batches of 48 vs the caption step.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bench_models import (
    DUMMY_ENGINE,
    Unavailable,
    fixed_length,
    llava_7b_folder,
    tiny_llava,
    variant,
    vllm_on_cuda,
)
from captionary import Caption, Load, Workspace
from captionary.backends import BackendConfig, GenerationParams, Request, make_backend

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
EDGE = 512
BATCH = 16


@dataclass
class Row:
    run: str
    seconds: float
    images: int
    tokens: int


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def thumbnail(path: Path) -> Image.Image:
    """What a hand-written loop does: decode (at reduced JPEG scale), RGB, fit in EDGE x EDGE."""
    with Image.open(path) as image:
        image.draft("RGB", (EDGE, EDGE))
        image = image.convert("RGB")
        image.thumbnail((EDGE, EDGE))
        return image


# --- openai ------------------------------------------------------------------------------------------
CONCURRENCIES = (8, 64)


def data_url(path: Path) -> str:
    """The work behind one request's image: decode (at reduced JPEG scale), downscale, JPEG, base64."""
    buffer = io.BytesIO()
    thumbnail(path).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def copies_of(photos: Path, folder: Path, copies: int, edge: int | None) -> Path:
    """`copies` distinct JPEGs per photo (mirrored, cropped), at full size or fitted in `edge` px:
    enough images that a run's fixed costs (start, last answers, commit) do not weigh on its rate."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(photos_in(photos)):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        if edge:
            image.thumbnail((edge, edge))
        for k in range(copies):
            variant(image, k).save(folder / f"{i:04d}_{k:03d}.jpg", quality=90)
    return folder


def encode_rate(paths: list[Path]) -> float:
    """Images/s of `data_url` on one thread per core (Pillow releases the GIL while it decodes)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(data_url, paths))
    return len(paths) / (time.perf_counter() - start)


def bare_client(url: str, bodies: list[bytes], concurrency: int) -> float:
    """Requests/s of ready-made bodies posted `concurrency` at a time through the openai backend's own
    client (`backends/http_loop.py`: one event loop, aiohttp's client when installed): what this
    machine's client and server manage at that concurrency, with no image work at all."""
    from captionary.backends.http_loop import HttpLoop

    http = HttpLoop(
        base_url=url, headers={"Content-Type": "application/json"}, timeout=60.0, concurrency=concurrency
    )

    async def post(body: bytes) -> None:
        async with http.slots:
            (await http.client.post("/chat/completions", body, {"content-type": "application/json"})).json()

    try:
        start = time.perf_counter()
        for future in [http.submit(post(body)) for body in bodies]:
            future.result()
        return len(bodies) / (time.perf_counter() - start)
    finally:
        http.close()


def step_rate(ws: Workspace, photos: Path, url: str, concurrency: int, tokens: int, run: int) -> float:
    """Images/s of the caption step on photos already ingested (a new prompt each run: no cache hit)."""
    step = Caption(
        backend="openai",
        model="bench-vlm",
        base_url=url,
        concurrency=concurrency,
        max_image_edge=EDGE,
        batch_size=BATCH,
        prompt=f"Describe the image ({run}).",
        max_tokens=tokens + 10,
    )
    start = time.perf_counter()
    summary = ws.run(Load(photos) >> step, progress=False)
    seconds = time.perf_counter() - start
    assert not summary.errors, summary.errors[:3]
    return summary.step("caption").n_out / seconds


def bench_openai(photos: Path, root: Path, args: argparse.Namespace) -> str:
    """The caption step against the bound min(concurrency / latency, encode rate), per photo set and
    concurrency, each figure measured `--reps` times interleaved; the server runs in its own process."""
    from api_stub import ApiStub

    sets = {f"full-size copies x{args.full_copies}": copies_of(photos, root / "full", args.full_copies, None)}
    if args.small_copies:
        small = copies_of(photos, root / "small", args.small_copies, 384)
        sets[f"384 px copies x{args.small_copies}"] = small
    lines = []
    with ApiStub(args.latency, args.tokens) as stub:
        for label, folder in sets.items():
            paths = photos_in(folder)
            bodies = [
                json.dumps(
                    {
                        "model": "m",
                        "messages": [
                            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}
                        ],
                    }
                ).encode()
                for url in map(data_url, paths[:8])
            ]
            runs: dict[str, list[float]] = {}
            with Workspace(root / f"ws-{len(lines)}") as ws:
                ws.run(Load(folder), progress=False)  # ingested once: the step's own rate is measured
                served, cpu = stub.stats()["requests"], stub.stats()["cpu_s"]
                for rep in range(args.reps):
                    runs.setdefault("encode", []).append(encode_rate(paths))
                    for c in CONCURRENCIES:
                        runs.setdefault(f"bare {c}", []).append(
                            bare_client(stub.url, bodies * (c * args.bare_waves // len(bodies) + 1), c)
                        )
                        runs.setdefault(f"step {c}", []).append(
                            step_rate(ws, folder, stub.url, c, args.tokens, rep * 100 + c)
                        )
                stats = stub.stats()
                per_request = (stats["cpu_s"] - cpu) / max(1, stats["requests"] - served)
            encode = statistics.median(runs["encode"])
            lines.append(
                f"{label}: {len(paths)} images; the server used {per_request * 1e3:.2f} ms of CPU per "
                f"request (capacity ~{1 / per_request:.0f} requests/s per core)"
            )
            lines.append(
                f"{'images/s (min / median of ' + str(args.reps) + ')':<44}{'min':>8}{'median':>8}"
                f"{'bound':>8}{'median/bound':>14}"
            )
            lines.append(
                f"{f'encode rate ({os.cpu_count()} threads)':<44}{min(runs['encode']):>8.1f}{encode:>8.1f}"
            )
            for c in CONCURRENCIES:
                bound = min(c / args.latency, encode)
                for key, name in (
                    (f"bare {c}", f"bare client, no images, concurrency {c}"),
                    (f"step {c}", f"caption step, concurrency {c}"),
                ):
                    median = statistics.median(runs[key])
                    limit = c / args.latency if key.startswith("bare") else bound
                    lines.append(
                        f"{name:<44}{min(runs[key]):>8.1f}{median:>8.1f}{limit:>8.1f}{median / limit:>13.0%}"
                    )
            lines.append("")
    return "\n".join(lines)


def bench_openai_runs(photos: Path, root: Path, args: argparse.Namespace) -> list[Row]:
    """First run, cached re-run and new prompt of `load >> caption` at concurrency 8, against the
    backend called directly in batches of 16 (decode, downscale, request) in the same run."""
    from api_stub import ApiStub

    params = GenerationParams(max_tokens=args.tokens + 10)
    paths = photos_in(photos)
    rows = []
    with ApiStub(args.latency, args.tokens) as stub:
        options = {"base_url": stub.url, "concurrency": 8, "max_image_edge": EDGE}
        with make_backend(BackendConfig("openai", "bench-vlm", options=options)) as backend:
            start, tokens = time.perf_counter(), 0
            for first in range(0, len(paths), BATCH):
                batch = [
                    Request("Describe the image.", [thumbnail(p)], params=params)
                    for p in paths[first : first + BATCH]
                ]
                tokens += sum(r.completion_tokens for r in backend.generate(batch))
            rows.append(
                Row(f"direct, batches of {BATCH} (baseline)", time.perf_counter() - start, len(paths), tokens)
            )
        step = Caption(
            backend="openai",
            model="bench-vlm",
            base_url=stub.url,
            concurrency=8,
            max_image_edge=EDGE,
            batch_size=BATCH,
            prompt="Describe the image.",
            max_tokens=args.tokens + 10,
        )
        rows += run_captionary(step, photos, root / "ws-openai")
    return rows


# --- transformers ------------------------------------------------------------------------------------
def bench_transformers(photos: Path, root: Path, args: argparse.Namespace) -> list[Row]:
    """The tiny LLaVA on CPU: what captionary adds (cache, batching, decode) to the model's own work."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = tiny_llava(root, args.tokens)
    paths = photos_in(photos)
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    warm = processor(images=[thumbnail(paths[0])], text=[prompt], return_tensors="pt")
    with torch.inference_mode():  # untimed: the first calls of a fresh model are slow
        model.generate(**warm, max_new_tokens=args.tokens, do_sample=False)

    def direct() -> tuple[float, int]:
        start, tokens = time.perf_counter(), 0
        for first in range(0, len(paths), BATCH):
            batch = [thumbnail(p) for p in paths[first : first + BATCH]]
            inputs = processor(images=batch, text=[prompt] * len(batch), padding=True, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=args.tokens, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1] :]
            processor.batch_decode(new, skip_special_tokens=True)
            tokens += int(new.numel())
        return time.perf_counter() - start, tokens

    threads = torch.get_num_threads()
    runs = {f"generate() x{BATCH}, {threads} threads": direct()}
    torch.set_num_threads(1)  # on a busy machine torch's threads wait for each other: try one too
    runs[f"generate() x{BATCH}, 1 thread"] = direct()
    torch.set_num_threads(threads)
    best = min(runs.values())
    step = Caption(
        backend="transformers",
        model=str(folder),
        max_image_edge=EDGE,
        batch_size=BATCH,
        prompt="Describe the image.",
        max_tokens=args.tokens,
    )
    rows = [
        Row(label + (" (baseline)" if run is best else ""), run[0], len(paths), run[1])
        for label, run in runs.items()
    ]
    return rows + run_captionary(step, photos, root / "ws-transformers")


# --- vllm (GPU) --------------------------------------------------------------------------------------
def variants(photos: Path, folder: Path, copies: int) -> Path:
    """`copies` distinct JPEGs per photo (mirrored, cropped a little more each time): enough images to
    keep a GPU busy, none a duplicate the cache would skip."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(photos_in(photos)):
        image = thumbnail(path)
        for k in range(copies):
            variant(image, k).save(folder / f"{i:04d}_{k:03d}.jpg", quality=90)
    return folder


def bench_vllm(photos: Path, root: Path, args: argparse.Namespace) -> list[Row]:
    """vLLM on a GPU, full-size random weights, fixed output length: `LLM.chat` on batches of 48
    (decode, downscale, generate, in turn) vs the `caption` step on the vllm backend."""
    vllm = vllm_on_cuda()
    from captionary.backends.vllm import conversation

    folder = llava_7b_folder(root)
    images = variants(photos, root / "vllm-photos", args.copies)
    paths = photos_in(images)
    engine = DUMMY_ENGINE
    fixed = fixed_length(args.tokens)
    llm = vllm.LLM(model=str(folder), **engine)
    sampling = vllm.SamplingParams(max_tokens=args.tokens, temperature=0.0, **fixed)
    llm.chat([conversation(Request("Describe the image.", [thumbnail(paths[0])]))], sampling, use_tqdm=False)
    start, tokens = time.perf_counter(), 0
    for first in range(0, len(paths), 48):
        batch = [
            conversation(Request("Describe the image.", [thumbnail(p)])) for p in paths[first : first + 48]
        ]
        tokens += sum(len(o.outputs[0].token_ids) for o in llm.chat(batch, sampling, use_tqdm=False))
    rows = [Row("LLM.chat, batches of 48 (baseline)", time.perf_counter() - start, len(paths), tokens)]
    step = Caption(
        backend="vllm",
        model=str(folder),
        max_image_edge=EDGE,
        batch_size=args.vllm_batch,
        prompt="Describe the image.",
        max_tokens=args.tokens,
        options={**engine, "data_parallel": 1, "sampling_options": fixed},
    )
    return rows + run_captionary(step, images, root / "ws-vllm")


# --- shared ------------------------------------------------------------------------------------------
def run_captionary(step: Caption, photos: Path, ws_path: Path) -> list[Row]:
    """captionary's first run and cached re-run of `load >> step`, then the step with a new prompt
    on photos already ingested (the step's own overhead, without copying originals in)."""
    rows = []
    reworded = dataclasses.replace(step, prompt=step.prompt + " ")
    with Workspace(ws_path) as ws:
        for label, this in (
            ("captionary first run (ingest included)", step),
            ("captionary cached re-run", step),
            ("captionary new prompt, photos ingested", reworded),
        ):
            start = time.perf_counter()
            summary = ws.run(Load(photos) >> this, progress=False)
            seconds = time.perf_counter() - start
            stats = summary.step("caption")
            assert not summary.errors, summary.errors[:3]
            rows.append(Row(label, seconds, stats.n_out, stats.usage.get("completion_tokens", 0)))
    return rows


BENCHMARKS: dict[str, Callable[[Path, Path, argparse.Namespace], list[Row] | str]] = {
    "openai": bench_openai,
    "openai-runs": bench_openai_runs,
    "transformers": bench_transformers,
    "vllm": bench_vllm,
}
"""Backend name -> benchmark; each returns its rows, the baseline marked `(baseline)`, or its table."""


def table(name: str, rows: list[Row]) -> str:
    [base] = [r for r in rows if "(baseline)" in r.run]
    base_rate = base.images / base.seconds
    lines = [f"{name:<40}{'wall s':>8}{'images':>8}{'images/s':>10}{'out tok/s':>11}{'vs base':>9}"]
    for r in rows:
        rate = r.images / r.seconds
        lines.append(
            f"{r.run:<40}{r.seconds:>8.2f}{r.images:>8}{rate:>10.1f}{r.tokens / r.seconds:>11.0f}"
            f"{rate / base_rate:>8.2f}x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fallback = REPO / "examples" / "photos"
    parser.add_argument("--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else fallback)
    parser.add_argument("--backends", default=",".join(BENCHMARKS))
    parser.add_argument("--latency", type=float, default=0.1, help="openai: seconds per answer")
    parser.add_argument("--tokens", type=int, default=40, help="output tokens per caption")
    parser.add_argument("--copies", type=int, default=40, help="vllm: distinct variants of each photo")
    parser.add_argument("--full-copies", type=int, default=3, help="openai: full-size copies per photo")
    parser.add_argument(
        "--small-copies", type=int, default=4, help="openai: 384 px copies per photo (0: none)"
    )
    parser.add_argument("--reps", type=int, default=2, help="openai: interleaved repetitions")
    parser.add_argument(
        "--bare-waves",
        type=int,
        default=10,
        help="openai: the bare client posts concurrency x this many requests (its ramp-up and last "
        "answers weigh 1/waves on its rate)",
    )
    parser.add_argument("--vllm-batch", type=int, default=256, help="vllm: the caption step's batch_size")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-caption-"))
    try:
        print(f"{len(photos_in(args.photos))} photos from {args.photos}; load average {os.getloadavg()}")
        for name in args.backends.split(","):
            print()
            try:
                rows = BENCHMARKS[name](args.photos, root, args)
                print(rows if isinstance(rows, str) else table(name, rows))
            except Unavailable as exc:
                print(f"{name}: skipped, {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
