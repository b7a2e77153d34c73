"""`caption` and `compose_caption` on the transformers backend, end to end through a real Workspace run:
a tiny model loaded from a local folder captions the bundled real photos in batches; a second run
computes nothing and never loads the model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image
from tiny_models import tiny_model

from captionary import Caption, ComposeCaption, Load, Save, Workspace
from captionary.pipeline.yaml_loader import load_pipeline


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


def direct_captions(model_dir: Path, files: list[Path], prompt: str, max_tokens: int) -> dict[str, str]:
    """The same model called with transformers directly, one image at a time (the reference)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    out = {}
    for file in files:
        inputs = processor(images=Image.open(file).convert("RGB"), text=text, return_tensors="pt")
        with torch.inference_mode():
            tokens = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
        new = tokens[0, inputs["input_ids"].shape[1] :]
        out[file.relative_to(files[0].parents[1]).with_suffix("").as_posix()] = processor.decode(
            new, skip_special_tokens=True
        ).strip()
    return out


def test_caption_step_runs_batched_caches_and_never_loads_the_model_again(
    photos, ws_path, tmp_path, models_root
):
    model_dir = tiny_model("llava", models_root)
    out = tmp_path / "out"

    def pipeline():
        step = Caption(
            backend="transformers", model=str(model_dir), prompt="Describe.", max_tokens=6, batch_size=5
        )
        return step, Load(photos) >> step >> Save(out, json_sidecar=True)

    with Workspace(ws_path) as ws:
        step, plan = pipeline()
        first = ws.run(plan, progress=False)
        backend = step.resolved.backend
        assert first.step("caption").computed == 12 and first.step("caption").failed == 0
        assert backend.calls == 3  # 12 images in batches of 5, 5, 2
        assert backend.model is None  # released when the step was done
        captions = {item.name: item["caption"] for item in ws.items()}

        step, plan = pipeline()
        second = ws.run(plan, progress=False)
        backend = step.resolved.backend
    assert second.step("caption").computed == 0 and second.step("caption").cached == 12
    assert backend.calls == 0 and backend.model is None  # never loaded

    files = sorted(photos.rglob("*.jpg"))
    assert captions == direct_captions(model_dir, files, "Describe.", 6)
    for name, caption in captions.items():
        assert (out / f"{name}.txt").read_text().rstrip("\n") == caption


def test_caption_from_yaml_with_florence2_and_blip2(tmp_path, photos, models_root):
    florence, blip2 = tiny_model("florence2", models_root), tiny_model("blip2", models_root)
    (tmp_path / "pipeline.yaml").write_text(
        f"""workspace: ws
steps:
  - load: {{path: {photos}}}
  - take: {{n: 4}}
  - caption: {{backend: transformers, model: {florence}, max_tokens: 5, batch_size: 4}}
  - caption: {{backend: transformers, model: {blip2}, prompt: "a photo of", target: blip_caption,
               max_tokens: 5, on_truncated: keep}}
"""
    )
    pipeline = load_pipeline(tmp_path / "pipeline.yaml")
    with Workspace(tmp_path / "ws") as ws:
        summary = ws.run(pipeline.pipeline, progress=False)
        items = list(ws.items())
    assert summary.step("caption").failed == 0
    assert len(items) == 4
    for item in items:
        assert item["caption"] and item["blip_caption"]
        assert item["caption_truncated"] is True  # 5 tokens is below what the model writes
        assert "blip_caption_truncated" not in item.props


def test_out_of_memory_halves_the_batch_and_loses_nothing(photos, ws_path, models_root):
    import torch

    seen: list[int] = []
    step = Caption(
        backend="transformers", model=str(tiny_model("llava", models_root)), max_tokens=3, batch_size=8
    )
    backend = step.resolved.backend
    original_load = backend.load

    def load_with_small_memory():
        original_load()
        generate = backend.model.generate

        def generate_at_most_two(**inputs):
            seen.append(len(inputs["input_ids"]))
            if len(inputs["input_ids"]) > 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return generate(**inputs)

        backend.model.generate = generate_at_most_two

    backend.load = load_with_small_memory
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> step, progress=False)
        captions = [item["caption"] for item in ws.items()]
    assert summary.step("caption").computed == 12 and summary.step("caption").failed == 0
    assert seen[:3] == [8, 4, 2] and set(seen[3:]) <= {2}
    assert all(captions)


def test_compose_caption_with_a_text_llm(photos, ws_path, models_root):
    step = ComposeCaption(
        backend="transformers",
        model=str(tiny_model("llama_text", models_root)),
        prompt="Rewrite: {caption}",
        target="final",
        max_tokens=4,
        default="a photo",
        batch_size=4,
    )
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> step, progress=False)
        finals = [item["final"] for item in ws.items()]
    assert summary.step("compose_caption").computed == 12
    assert all(finals)


def test_caption_variations_sample_n_texts_with_a_text_llm(photos, ws_path, models_root):
    from captionary import CaptionVariations

    def step():
        return CaptionVariations(
            backend="transformers",
            model=str(tiny_model("llama_text", models_root)),
            n=3,
            seed=5,
            max_tokens=5,
            batch_size=4,
        )

    with Workspace(ws_path) as ws:
        ws.run(Load(photos) >> step(), progress=False)  # only the three dog photos have captions
        first = {item.name: item.get("caption_variations") for item in ws.items()}
        again = ws.run(Load(photos) >> step(), progress=False)
    worded = {name: texts for name, texts in first.items() if texts is not None}
    assert len(worded) == 3 and all(len(texts) == 3 for texts in worded.values())
    assert any(len(set(texts)) > 1 for texts in worded.values())  # sampled, not three greedy copies
    assert again.step("caption_variations").computed == 0
