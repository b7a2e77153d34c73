"""`recaption` throughput: captionary's `recaption` against the synchronous batch loop a person writes
by hand, on the same WebDataset shards, model and settings, in this one process.

Input: `--shards` uncompressed shards of `--copies` distinct variants of every photo (cropped a little
more each time, every other one mirrored; at most `--source-edge` px), each sample `.jpg` + `.txt` (the
old caption) + `.json`. Both sides decode each JPEG at a reduced DCT scale, fit it in `--edge` px, ask
for exactly `--tokens` tokens ("Describe the image.") in batches of `--batch`, and write shards with
the original image bytes, the new caption as `.txt` and the old one in `.json`; loading the model is
inside every timed run (one untimed warm-up caption first, so neither pays the process's first calls).

- the loop (baseline): `webdataset.WebDataset` -> decode -> batch -> model -> `webdataset.TarWriter`,
  one shard after the other, each step waiting for the one before;
- captionary: `captionary.recaption.recaption(...)` with the local executor and, when Ray is installed,
  the ray executor (a local Ray on every core, started before its clock), then the local one again on
  its finished workspace (what resuming costs).

`--backend transformers` (default): the tests' tiny random-weight LLaVA, so on a CPU the model's work
is small and the table shows what captionary adds; `--size 7b` (CUDA): a LLaVA-1.5-7B-shaped model with
random bf16 weights (14 GB, built on the GPU and saved before any clock). `--backend vllm` (CUDA +
vllm): the same shape with `load_format="dummy"` (config written locally, no download), every output
exactly `--tokens` tokens (`min_tokens` + `ignore_eos`); the loop calls `LLM.chat` on each batch.

    python benchmarks/recaption.py                                            # CPU, tiny LLaVA
    python benchmarks/recaption.py --backend vllm --photos examples/photos --copies 64 --batch 64
    python benchmarks/recaption.py --size 7b --photos examples/photos --copies 16   # GPU, no vllm

benchmarks/gpu_check.sh runs the GPU variants (and the GPU tests) in one device call.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench_models import (
    DUMMY_ENGINE,
    Unavailable,
    fixed_length,
    llava_7b_folder,
    llava_7b_weights,
    tiny_llava,
    vllm_on_cuda,
)
from bench_shards import captions, make_shards, photos_in

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
PROMPT = "Describe the image."

Captioner = Callable[[list[Image.Image]], tuple[list[str], int]]
"""The loop's model call: images -> (captions, output tokens)."""


@dataclass
class Row:
    run: str
    images: int
    seconds: float
    tokens: int
    load_seconds: float = 0.0  # of `seconds`, spent loading the model (the loop's row)


# --- the loop -----------------------------------------------------------------------------------------
def decode(data: bytes, edge: int) -> Image.Image:
    """What a careful hand-written loop does: decode at reduced JPEG scale, RGB, fit in edge x edge."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (edge, edge))
        image = image.convert("RGB")
    image.thumbnail((edge, edge))
    return image


def run_loop(load: Callable[[], Captioner], urls: list[Path], out: Path, args: argparse.Namespace) -> Row:
    """The baseline, model loading included; returns its row (`seconds` from start to last write)."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    caption = load()
    loaded = time.perf_counter() - start
    images = tokens = 0
    for url in urls:
        with wds.TarWriter(str(out / url.name)) as sink:
            samples = wds.WebDataset(str(url), shardshuffle=False, empty_check=False)
            for batch in samples.batched(args.batch, collation_fn=None):  # lists of sample dicts
                texts, used = caption([decode(s["jpg"], args.edge) for s in batch])
                for sample, text in zip(batch, texts):
                    props = {
                        **json.loads(sample["json"]),
                        "caption": sample["txt"].decode(),
                        "recaption": text,
                    }
                    out_sample = {"__key__": sample["__key__"], "jpg": sample["jpg"], "txt": text.encode()}
                    sink.write({**out_sample, "json": json.dumps(props).encode()})
                images, tokens = images + len(batch), tokens + used
    seconds = time.perf_counter() - start
    return Row("loop: webdataset, model, TarWriter (baseline)", images, seconds, tokens, loaded)


# --- models -------------------------------------------------------------------------------------------
@dataclass
class Model:
    """One model as both sides use it: the loop's loader, and the caption step's options."""

    label: str
    folder: Path
    load: Callable[[], Captioner]
    step: dict[str, Any]
    close: Callable[[], None] = lambda: None  # free what the loop loaded before captionary's runs
    # a model to caption one image with, untimed, first: this process's first model calls are slow
    # (kernels chosen, memory pools grown), and neither side should pay for them
    warm_up: Callable[[], Captioner] | None = None


def transformers_model(root: Path, args: argparse.Namespace) -> Model:
    import torch

    cuda = torch.cuda.is_available()
    if args.size == "7b" and not cuda:
        raise Unavailable("--size 7b needs a CUDA GPU")
    tiny = tiny_llava(root, args.tokens)
    folder = llava_7b_weights(root, args.tokens) if args.size == "7b" else tiny
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32  # what the backend's dtype "auto" picks

    def loader(path: Path) -> Callable[[], Captioner]:
        return lambda: load(path)

    def load(path: Path) -> Captioner:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(path)
        processor.tokenizer.padding_side = "left"
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device).eval()
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)

        def caption(images: list[Image.Image]) -> tuple[list[str], int]:
            inputs = processor(images=images, text=[prompt] * len(images), padding=True, return_tensors="pt")
            inputs = inputs.to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=args.tokens, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1] :]
            texts = processor.batch_decode(new, skip_special_tokens=True)
            return [t.strip() for t in texts], int(new.numel())

        return caption

    label = "LLaVA-1.5-7B shape, random bf16 weights" if args.size == "7b" else "tiny random LLaVA"
    step = {"backend": "transformers"}
    # the warm-up uses the tiny model on the same device (a second 14 GB load would cost more than it saves)
    return Model(f"transformers, {label}, {device}", folder, loader(folder), step, warm_up=loader(tiny))


def vllm_model(root: Path, args: argparse.Namespace) -> Model:
    vllm = vllm_on_cuda("; on a GPU without vllm try --size 7b")
    folder = llava_7b_folder(root)
    fixed = fixed_length(args.tokens)

    def load() -> Captioner:
        llm = vllm.LLM(model=str(folder), **DUMMY_ENGINE)
        sampling = vllm.SamplingParams(max_tokens=args.tokens, temperature=0.0, **fixed)
        loaded.append(llm)

        def caption(images: list[Image.Image]) -> tuple[list[str], int]:
            parts = [
                [{"type": "image_pil", "image_pil": image}, {"type": "text", "text": PROMPT}]
                for image in images
            ]
            chats = [[{"role": "user", "content": content}] for content in parts]
            outputs = llm.chat(chats, sampling, use_tqdm=False)
            texts = [o.outputs[0].text.strip() for o in outputs]
            return texts, sum(len(o.outputs[0].token_ids) for o in outputs)

        return caption

    def close() -> None:
        import torch

        loaded.clear()  # the last reference: vLLM shuts its engine down
        gc.collect()
        torch.cuda.empty_cache()

    loaded: list[Any] = []
    step = {"backend": "vllm", "options": {**DUMMY_ENGINE, "data_parallel": 1, "sampling_options": fixed}}
    # no warm-up: each engine starts (and warms up) in processes of its own, a minute each
    return Model("vllm, LLaVA-1.5-7B shape, load_format=dummy", folder, load, step, close)


MODELS: dict[str, Callable[[Path, argparse.Namespace], Model]] = {
    "transformers": transformers_model,
    "vllm": vllm_model,
}


# --- captionary ---------------------------------------------------------------------------------------
def run_captionary(
    label: str, model: Model, urls: list[Path], root: Path, executor: str, args: argparse.Namespace
) -> Row:
    from captionary.recaption import recaption

    pattern = str(urls[0].parent / ("in-{0000.." + f"{len(urls) - 1:04d}" + "}.tar"))
    start = time.perf_counter()
    summary = recaption(
        pattern,
        root / f"out-{executor}",
        str(model.folder),
        workspace=root / f"ws-{executor}",
        executor=executor,
        executor_options={"progress": False},
        in_place=not args.copy_originals,
        shard_size=math.ceil(args.total / len(urls)),
        prompt=PROMPT,
        max_tokens=args.tokens,
        batch_size=args.batch,
        max_image_edge=args.edge,
        **model.step,
    )
    seconds = time.perf_counter() - start
    if summary.errors:
        raise RuntimeError(f"{label}: {len(summary.errors)} errors, e.g. {summary.errors[:2]}")
    stats = summary.step("caption")
    return Row(label, stats.n_out, seconds, stats.usage.get("completion_tokens", 0))


def start_ray() -> Any | None:
    """A local Ray on every core (None when Ray is not installed); started before any clock."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        return None
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    print(f"ray.init (once per driver, not in the runs below): {time.perf_counter() - start:.1f} s")
    return ray


# --- report -------------------------------------------------------------------------------------------
def agreement(root: Path, executors: list[str]) -> str:
    """How many of captionary's captions equal the loop's (greedy decoding, same inputs: all of them,
    unless batches of other sizes round differently)."""
    loop = captions(root / "out-loop")
    parts = []
    for executor in executors:
        if (root / f"out-{executor}").is_dir():
            theirs = captions(root / f"out-{executor}")
            same = sum(theirs.get(key) == text for key, text in loop.items())
            parts.append(f"{executor} {same}/{len(loop)}")
    return "captions equal to the loop's: " + ", ".join(parts)


def hardware(load_before: float) -> str:
    """CPUs and load (1-minute average, before and after), torch and its threads, the GPU. Called at
    the end: asking the GPU's name initialises CUDA, after which vLLM must spawn its workers."""
    load = f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    parts = [f"{os.cpu_count()} CPUs, {load}"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
        else:
            parts.append("no CUDA GPU")
    except ImportError:
        parts.append("no torch")
    return "; ".join(parts)


def table(rows: list[Row], base: Row) -> str:
    rate = base.images / base.seconds
    lines = [f"{'run':<48}{'images':>7}{'wall s':>9}{'images/s':>10}{'out tok/s':>11}{'vs loop':>9}"]
    for r in rows:
        lines.append(
            f"{r.run:<48}{r.images:>7}{r.seconds:>9.2f}{r.images / r.seconds:>10.1f}"
            f"{r.tokens / r.seconds:>11.0f}{r.images / r.seconds / rate:>8.2f}x"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fallback = REPO / "examples" / "photos"
    parser.add_argument("--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else fallback)
    parser.add_argument("--shards", type=int, default=4, help="input shards")
    parser.add_argument("--copies", type=int, default=8, help="distinct variants of each photo")
    parser.add_argument("--source-edge", type=int, default=1024, help="the shards' images fit in this")
    parser.add_argument("--edge", type=int, default=512, help="images are fitted in this before the model")
    parser.add_argument("--tokens", type=int, default=40, help="output tokens per caption (exactly)")
    parser.add_argument("--batch", type=int, default=16, help="images per model call, both sides")
    parser.add_argument("--backend", choices=sorted(MODELS), default="transformers")
    parser.add_argument("--size", choices=["tiny", "7b"], default="tiny", help="transformers model size")
    parser.add_argument("--executors", default="local,ray", help="captionary executors to run, in order")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--copy-originals", action="store_true", help="copy images into the workspace")
    parser.add_argument("--work", type=Path, default=None, help="keep shards and outputs here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Row]:
    """Run the benchmark, print the table; returns its rows (the loop's first)."""
    import sys

    args = parse(argv)
    command = shlex.join(["python", "benchmarks/recaption.py", *(sys.argv[1:] if argv is None else argv)])
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        raise SystemExit(f"--work {args.work}: not empty (a second run there would find everything cached)")
    root = args.work or Path(tempfile.mkdtemp(prefix="captionary-recaption-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        try:
            model = MODELS[args.backend](root, args)
        except Unavailable as exc:
            print(f"recaption benchmark, {args.backend}: skipped, {exc}")
            return []
        urls = make_shards(args.photos, root / "in", args.shards, args.copies, args.source_edge)
        args.total = sum(1 for _ in photos_in(args.photos)) * args.copies
        load_before = os.getloadavg()[0]
        if model.warm_up is not None:
            model.warm_up()([Image.new("RGB", (args.edge, args.edge), "gray")])
            gc.collect()
        loop = run_loop(model.load, urls, root / "out-loop", args)
        excluded = loop.seconds - loop.load_seconds
        rows = [loop, Row("  the same, model load excluded", loop.images, excluded, loop.tokens)]
        model.close()
        executors = args.executors.split(",")
        ray = None
        for executor in executors:
            if executor == "ray" and (ray := start_ray()) is None:
                print("ray is not installed: the ray executor is skipped")
                continue
            label = f"captionary recaption, {executor} executor"
            rows.append(run_captionary(label, model, urls, root, executor, args))
        if ray is not None:
            ray.shutdown()
        if "local" in executors:
            label = "captionary local re-run (all committed)"
            rows.append(run_captionary(label, model, urls, root, "local", args))
        print(
            f"recaption: {args.total} images ({args.copies} variants of each photo in {args.photos}, "
            f"<= {args.source_edge} px) in {len(urls)} shards; {model.label}; exactly {args.tokens} "
            f"tokens per caption, batches of {args.batch}, images fitted in {args.edge} px"
        )
        print(f"hardware: {hardware(load_before)}")
        print(f"command: {command}\n")
        print(table(rows, loop))
        print(agreement(root, executors))
        return rows
    finally:
        if args.work is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
