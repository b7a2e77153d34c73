"""`generate_image` overhead: captionary's `load_prompts >> generate_image >> save` against calling the
same diffusers pipeline directly in a loop, in this one process, on the same prompts, seeds, sizes
and batch size. Both sides write one PNG per image; repetitions alternate (loop, captionary, loop, ...)
and the table shows the median of each with the ratio to the loop, plus captionary's cached re-run.

- the loop (baseline): `pipe(prompt=batch, generator=[one per image], ...)` per batch, `image.save`,
  in a thread of its own (as captionary's batch stage runs the model; see `loop`);
- captionary: a fresh workspace per repetition; the step stores each image as a PNG blob, `save`
  writes the files (a second PNG encode), every result is committed to SQLite.

CPU (default): the tests' tiny random FLUX- and SD3-shaped pipelines (tests/generation/
tiny_pipelines.py), loaded from their folders inside each timed run, so the model's work is small and
the table shows what captionary adds around it. `--gpu`: FLUX.1-dev- and SD3.5-large-shaped pipelines
with random bf16 weights built on the GPU (no download; the real configs, word-level tokenizers) at
1024x1024; built once before any clock and shared by both sides (captionary reaches it through a
`module:Class` backend that takes the built pipeline instead of loading one), so rows compare
generation, not loading.

    python benchmarks/generate.py                      # CPU, tiny pipelines
    python benchmarks/generate.py --gpu --images 16 --steps 28 --batch 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "generation"))

from captionary import GenerateImage, Save, Workspace  # noqa: E402
from captionary.backends.diffusers import DiffusersBackend  # noqa: E402
from captionary.sources.prompts import LoadPrompts, derived_seed  # noqa: E402

WORDS = [
    "a",
    "photo",
    "of",
    "a",
    "dog",
    "cat",
    "red",
    "backpack",
    "teapot",
    "toy",
    "robot",
    "sneaker",
    "on",
    "the",
    "grass",
    "wooden",
    "floor",
    "sofa",
]
MODEL_SECONDS: list[float] = []
"""Seconds inside pipeline calls since the last clear (both sides), to split wall time into the model's
time and everything around it: on a shared 2-core machine the model's time varies far more than the
difference between the two sides."""
BUILT: dict[str, Any] = {}
"""--gpu: model folder name -> the pipeline built in this process (read by PrebuiltBackend)."""


def _timed_call(self: DiffusersBackend, requests: list[Any], arguments: dict[str, Any]) -> list[Any]:
    start = time.perf_counter()
    try:
        return _BACKEND_CALL(self, requests, arguments)
    finally:
        MODEL_SECONDS.append(time.perf_counter() - start)


_BACKEND_CALL = DiffusersBackend._call
DiffusersBackend._call = _timed_call  # type: ignore[method-assign]  # the pipeline call, timed


class PrebuiltBackend(DiffusersBackend):
    """The diffusers backend with the pipeline built in this process (random weights on the GPU)
    instead of loading one from a folder; everything else is the real backend."""

    def preflight(self) -> None:
        pass

    def load(self) -> None:
        if self.pipe is None:
            import inspect

            self.pipe = BUILT[self.config.model]
            self.device = "cuda"
            self.pipe.set_progress_bar_config(disable=True)
            self.accepts = frozenset(inspect.signature(self.pipe.__call__).parameters)

    def close(self) -> None:
        self.pipe = None  # shared with the loop: kept alive by BUILT


def prompts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(6)) + f" {i}" for i in range(n)]


def loop(pipe_or_folder: Any, texts: list[str], out: Path, settings: dict[str, Any], batch: int) -> None:
    """The baseline, run in a thread of its own as captionary's batch stage runs its model: on this
    2-core machine the same loop in the main thread was 4-8x slower (tiny FLUX, 64 px, measured
    side by side), which would flatter captionary."""
    with ThreadPoolExecutor(1) as worker:  # .result() re-raises what the loop raised
        worker.submit(_loop, pipe_or_folder, texts, out, settings, batch).result()


def _loop(pipe_or_folder: Any, texts: list[str], out: Path, settings: dict[str, Any], batch: int) -> None:
    import torch
    from diffusers import AutoPipelineForText2Image

    if isinstance(pipe_or_folder, Path):
        pipe = AutoPipelineForText2Image.from_pretrained(pipe_or_folder)
        pipe.set_progress_bar_config(disable=True)
    else:
        pipe = pipe_or_folder
    out.mkdir(parents=True)
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        generators = [torch.Generator("cpu").manual_seed(derived_seed(t, 0)) for t in chunk]
        start_call = time.perf_counter()
        with torch.inference_mode():
            images = pipe(prompt=chunk, generator=generators, output_type="pil", **settings).images
        MODEL_SECONDS.append(time.perf_counter() - start_call)
        for i, image in enumerate(images):
            image.save(out / f"{start + i:05d}.png")


def captionary_run(
    model: str, backend: str | None, prompts_file: Path, ws: Path, out: Path, settings, batch
) -> float:
    step = GenerateImage(model=model, backend=backend, batch_size=batch, **settings)
    start = time.perf_counter()
    summary = Workspace(ws).run(LoadPrompts(prompts_file) >> step >> Save(out, image_format="png"))
    seconds = time.perf_counter() - start
    assert summary.steps[1].failed == 0, summary.errors
    return seconds


def bench(
    name: str, model: Any, settings: dict[str, Any], args: argparse.Namespace, root: Path, backend: str | None
) -> list[tuple[str, float]]:
    texts = prompts(args.images)
    prompts_file = root / f"{name}.txt"
    prompts_file.write_text("\n".join(texts) + "\n")
    model_id = str(model) if isinstance(model, Path) else name
    warm = root / f"{name}-warm.txt"  # one untimed image each side first: imports, first calls
    warm.write_text(texts[0] + "\n")
    loop(model, texts[:1], root / f"{name}-warm-loop", settings, args.batch)
    captionary_run(model_id, backend, warm, root / f"{name}-warm-ws", root / f"{name}-warm-out", settings, 1)
    loop_s, ours_s = [], []
    for rep in range(args.repeat):
        MODEL_SECONDS.clear()
        start = time.perf_counter()
        loop(model, texts, root / f"{name}-loop-{rep}", settings, args.batch)
        loop_s.append((time.perf_counter() - start, sum(MODEL_SECONDS)))
        MODEL_SECONDS.clear()
        ws, out = root / f"{name}-ws-{rep}", root / f"{name}-out-{rep}"
        wall = captionary_run(model_id, backend, prompts_file, ws, out, settings, args.batch)
        ours_s.append((wall, sum(MODEL_SECONDS)))
    MODEL_SECONDS.clear()
    ws, out = root / f"{name}-ws-0", root / f"{name}-out-0"
    cached = captionary_run(model_id, backend, prompts_file, ws, out, settings, args.batch)
    return [
        (f"{name}: diffusers loop (baseline)", *medians(loop_s)),
        (f"{name}: captionary generate_image", *medians(ours_s)),
        (f"{name}: captionary, cached re-run", cached, sum(MODEL_SECONDS)),
    ]


def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall time and (wall - median time outside the model), from (wall, in model) pairs."""
    wall = statistics.median(w for w, _ in runs)
    outside = statistics.median(w - m for w, m in runs)
    return wall, wall - outside


def table(rows: list[tuple[str, float, float]], images: int) -> str:
    """Wall time, the part outside pipeline calls (loading, encoding, writing, bookkeeping) and the
    ratio of wall times; the outside column is the overhead that does not drown in the model's noise."""
    base = rows[0][1]
    lines = [f"{'run':<44}{'median s':>10}{'outside model s':>17}{'images/s':>10}{'vs loop':>9}"]
    for run, seconds, in_model in rows:
        rate, ratio = images / seconds, base / seconds
        lines.append(f"{run:<44}{seconds:>10.2f}{seconds - in_model:>17.2f}{rate:>10.2f}{ratio:>8.2f}x")
    return "\n".join(lines)


def gpu_pipelines() -> dict[str, Callable[[], Any]]:
    """FLUX.1-dev and SD3.5-large shapes (the published configs), random bf16 weights on the GPU."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from tiny_pipelines import word_tokenizer
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    def on_gpu(make: Callable[[], Any]) -> Any:
        with torch.device("cuda"):
            return make().to(torch.bfloat16).eval()

    def clip(tok: Any, hidden: int, layers: int, heads: int, projection: bool) -> Any:
        cfg = CLIPTextConfig(
            vocab_size=49408,
            hidden_size=hidden,
            intermediate_size=hidden * 4,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            projection_dim=hidden,
            max_position_embeddings=77,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
        return on_gpu(lambda: (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg))

    def t5xxl(tok: Any) -> Any:
        cfg = T5Config(
            vocab_size=32128,
            d_model=4096,
            d_ff=10240,
            d_kv=64,
            num_heads=64,
            num_layers=24,
            feed_forward_proj="gated-gelu",
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        return on_gpu(lambda: T5EncoderModel(cfg))

    def vae(shift: float, scale: float) -> Any:
        return on_gpu(
            lambda: AutoencoderKL(
                in_channels=3,
                out_channels=3,
                latent_channels=16,
                block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2,
                use_quant_conv=False,
                use_post_quant_conv=False,
                shift_factor=shift,
                scaling_factor=scale,
                sample_size=1024,
            )
        )

    def flux() -> Any:
        tok, tok2 = word_tokenizer(77), word_tokenizer(512)
        transformer = on_gpu(
            lambda: FluxTransformer2DModel(
                patch_size=1,
                in_channels=64,
                num_layers=19,
                num_single_layers=38,
                attention_head_dim=128,
                num_attention_heads=24,
                joint_attention_dim=4096,
                pooled_projection_dim=768,
                guidance_embeds=True,
                axes_dims_rope=[16, 56, 56],
            )
        )
        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
            vae=vae(0.1159, 0.3611),
            text_encoder=clip(tok, 768, 12, 12, False),
            tokenizer=tok,
            text_encoder_2=t5xxl(tok2),
            tokenizer_2=tok2,
            transformer=transformer,
        )

    def sd35() -> Any:
        tok, tok2, tok3 = word_tokenizer(77), word_tokenizer(77), word_tokenizer(256)
        transformer = on_gpu(
            lambda: SD3Transformer2DModel(
                sample_size=128,
                patch_size=2,
                in_channels=16,
                num_layers=38,
                attention_head_dim=64,
                num_attention_heads=38,
                joint_attention_dim=4096,
                caption_projection_dim=2432,
                pooled_projection_dim=2048,
                out_channels=16,
                pos_embed_max_size=192,
                qk_norm="rms_norm",
            )
        )
        return StableDiffusion3Pipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=vae(0.0609, 1.5305),
            text_encoder=clip(tok, 768, 12, 12, True),
            tokenizer=tok,
            text_encoder_2=clip(tok2, 1280, 32, 20, True),
            tokenizer_2=tok2,
            text_encoder_3=t5xxl(tok3),
            tokenizer_3=tok3,
            transformer=transformer,
        )

    return {"flux-dev-shaped": flux, "sd3.5-large-shaped": sd35}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--gpu", action="store_true", help="FLUX/SD3.5-shaped random bf16 models at 1024x1024"
    )
    parser.add_argument("--images", type=int, default=None, help="prompts (default 48 CPU, 8 GPU)")
    parser.add_argument("--steps", type=int, default=None, help="inference steps (default 4 CPU, 28 GPU)")
    parser.add_argument("--size", type=int, default=None, help="height = width (default 64 CPU, 1024 GPU)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="flux,sd3", help="which shapes: flux, sd3")
    args = parser.parse_args()
    args.images = args.images or (8 if args.gpu else 48)
    steps = args.steps or (28 if args.gpu else 4)
    size = args.size or (1024 if args.gpu else 64)
    root = Path(tempfile.mkdtemp(prefix="captionary-generate-"))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")
    try:
        common = {"height": size, "width": size, "num_inference_steps": steps, "guidance_scale": 3.5}
        if args.gpu:
            import torch

            print(f"GPU: {torch.cuda.get_device_name()}")
            for name, build in gpu_pipelines().items():
                if name.split("-")[0].replace("3.5", "3") not in args.models.split(","):
                    continue
                BUILT[name] = build()
                settings = {**common, "max_sequence_length": 512 if name.startswith("flux") else 256}
                rows = bench(name, BUILT[name], settings, args, root, f"{__name__}:PrebuiltBackend")
                print(f"\n{name}: {args.images} images of {size}x{size}, {steps} steps, batch {args.batch}")
                print(table(rows, args.images))
                del BUILT[name]
                torch.cuda.empty_cache()
        else:
            from tiny_pipelines import build_flux, build_sd3

            for name, build in (("tiny-flux", build_flux), ("tiny-sd3", build_sd3)):
                if name.removeprefix("tiny-") not in args.models.split(","):
                    continue
                folder = build(root / name)
                rows = bench(name, folder, {**common, "max_sequence_length": 32}, args, root, None)
                print(f"\n{name}: {args.images} images of {size}x{size}, {steps} steps, batch {args.batch}")
                print(table(rows, args.images))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
