"""Captioning throughput: captionary's `caption` step against calling each backend directly in a loop.

One function per backend (`BENCHMARKS`); each runs, in this process and on the same photos: the
backend called directly (the loop a person writes by hand), captionary's first run
(`load >> caption`, ingest included) and its cached re-run, and prints images/s and output tokens/s
with the ratio to the direct loop.

    python benchmarks/caption.py                                  # every backend that can run here
    python benchmarks/caption.py --backends openai --photos examples/photos

openai: a local OpenAI-compatible server in this process answers every request after a fixed
`--latency` (default 0.1 s, like a fast hosted API) with `--tokens` words; images go as 512 px JPEG
data URLs; 8 concurrent requests both ways.

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
import dataclasses
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
def serve_openai(latency: float, tokens: int) -> ThreadingHTTPServer:
    """A chat-completions server that waits `latency` s and answers `tokens` words."""
    answer = " ".join(["word"] * tokens)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency)
            body = json.dumps(
                {
                    "choices": [{"index": 0, "message": {"content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": tokens},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bench_openai(photos: Path, root: Path, args: argparse.Namespace) -> list[Row]:
    server = serve_openai(args.latency, args.tokens)
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    options = {"base_url": url, "concurrency": 8, "max_image_edge": EDGE}
    params = GenerationParams(max_tokens=args.tokens + 10)
    paths = photos_in(photos)
    rows = []
    try:
        with make_backend(BackendConfig("openai", "bench-vlm", options=options)) as backend:
            start, tokens = time.perf_counter(), 0
            for path in paths[: max(1, len(paths) // 4)]:  # one request at a time (a quarter: it is slow)
                [result] = backend.generate(
                    [Request("Describe the image.", [thumbnail(path)], params=params)]
                )
                tokens += result.completion_tokens
            count = max(1, len(paths) // 4)
            rows.append(Row("direct, one request at a time", time.perf_counter() - start, count, tokens))

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
            base_url=url,
            concurrency=8,
            max_image_edge=EDGE,
            batch_size=BATCH,
            prompt="Describe the image.",
            max_tokens=args.tokens + 10,
        )
        rows += run_captionary(step, photos, root / "ws-openai")
    finally:
        server.shutdown()
        server.server_close()
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


BENCHMARKS: dict[str, Callable[[Path, Path, argparse.Namespace], list[Row]]] = {
    "openai": bench_openai,
    "transformers": bench_transformers,
    "vllm": bench_vllm,
}
"""Backend name -> benchmark; each returns its rows, the baseline marked `(baseline)`."""


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
    parser.add_argument("--vllm-batch", type=int, default=256, help="vllm: the caption step's batch_size")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-caption-"))
    try:
        print(f"{len(photos_in(args.photos))} photos from {args.photos}")
        for name in args.backends.split(","):
            print()
            try:
                print(table(name, BENCHMARKS[name](args.photos, root, args)))
            except Unavailable as exc:
                print(f"{name}: skipped, {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
