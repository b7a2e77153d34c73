"""The benchmarks' LLaVA-1.5-7B-shaped checkpoint (config, tokenizer and processor, no weights): what
vLLM reads from the folder with `load_format="dummy"`, checked offline with transformers."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import REPO, SAMPLE_PHOTOS

pytest.importorskip("transformers")


@pytest.fixture
def bench_models(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_models

    return bench_models


def test_llava_7b_folder_is_complete_for_vllm(bench_models, tmp_path):
    from transformers import AutoConfig, AutoProcessor, AutoTokenizer

    folder = bench_models.llava_7b_folder(tmp_path)
    assert not list(folder.glob("*.safetensors"))  # no weights: vLLM makes random ones
    raw = json.loads((folder / "config.json").read_text())
    # vLLM picks its classes by these names; without them it refuses the folder
    assert raw["architectures"] == ["LlavaForConditionalGeneration"]
    assert raw["text_config"]["architectures"] == ["LlamaForCausalLM"]

    config = AutoConfig.from_pretrained(folder)
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size) == (4096, 32, 11008)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size) == (1024, 24, 336)

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert text.vocab_size == len(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<image>") == config.image_token_index

    processor = AutoProcessor.from_pretrained(folder)
    content = [{"type": "image"}, {"type": "text", "text": "Describe the image."}]
    messages = [{"role": "user", "content": content}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    with Image.open(sorted(SAMPLE_PHOTOS.rglob("*.jpg"))[0]) as photo:
        inputs = processor(images=[photo.convert("RGB")], text=[prompt], return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 336, 336)
    image_tokens = int((inputs["input_ids"] == config.image_token_index).sum())
    assert image_tokens == 576 == config.image_seq_length  # 24 x 24 patches, CLS dropped ("default")


def test_variants_are_distinct_images(bench_models):
    image = Image.new("RGB", (64, 48))
    image.paste((255, 0, 0), (0, 0, 20, 48))  # not symmetric: a mirrored copy differs
    copies = [bench_models.variant(image, k) for k in range(6)]
    assert copies[0].tobytes() == image.tobytes()
    assert [c.size for c in copies] == [(64, 48), (64, 48), (56, 40), (56, 40), (48, 32), (48, 32)]
    assert len({(c.size, c.tobytes()) for c in copies}) == 6
