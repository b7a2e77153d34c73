"""Models and images the captioning benchmarks share (caption.py, recaption.py): built offline, no hub.

- `tiny_llava`: the tests' tiny random-weight LLaVA (tests/backends/tiny_models.py), set to write
  exactly `tokens` tokens per caption, so a CPU run measures what surrounds the model.
- `llava_7b_folder`: a LLaVA-1.5-7B-shaped checkpoint without weights, for vLLM's `load_format="dummy"`
  (random weights from the config); `llava_7b_weights` adds random bf16 weights on a CUDA GPU for the
  transformers backend, where vLLM is not installed.
- `DUMMY_ENGINE` / `fixed_length`: the vLLM engine and sampling settings both sides of a vLLM
  benchmark use, so they do identical work.
- `variant`: distinct copies of a photo (cropped a little more each time, every other one mirrored),
  so there are enough images and none is a duplicate a cache would skip.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[1]

DUMMY_ENGINE: dict[str, Any] = {
    "load_format": "dummy",
    "dtype": "bfloat16",
    "max_model_len": 2048,
    "gpu_memory_utilization": 0.4,  # the baseline's engine and captionary's share the GPU
    "limit_mm_per_prompt": {"image": 1},
}
"""`vllm.LLM` arguments (besides `model`) for the dummy-weight LLaVA-7B."""


class Unavailable(Exception):
    """This machine cannot run the benchmark or backend asked for (printed instead of a table)."""


def vllm_on_cuda(hint: str = "") -> Any:
    """The `vllm` module, where it and a CUDA GPU are here; else Unavailable (with `hint` appended)."""
    try:
        import torch
        import vllm
    except ImportError as exc:
        raise Unavailable(f"needs vllm and torch ({exc}){hint}") from None
    if not torch.cuda.is_available():
        raise Unavailable("needs a CUDA GPU")
    return vllm


def fixed_length(tokens: int) -> dict[str, Any]:
    """`vllm.SamplingParams` fields that make every output exactly `tokens` tokens (with max_tokens)."""
    return {"min_tokens": tokens, "ignore_eos": True}


def tiny_models() -> Any:
    """The tests' model builders (tests/backends/tiny_models.py)."""
    folder = str(REPO / "tests" / "backends")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("tiny_models")


def fix_length(folder: Path, tokens: int) -> Path:
    """Set a saved model's generation config to write at least `tokens` tokens (EOS suppressed until
    then), so with `max_new_tokens=tokens` every caption is exactly that long."""
    path = folder / "generation_config.json"
    config = json.loads(path.read_text())
    config["min_new_tokens"] = tokens
    path.write_text(json.dumps(config))
    return folder


def tiny_llava(root: Path, tokens: int) -> Path:
    """The tests' tiny random-weight LLaVA, set to write exactly `tokens` tokens per caption."""
    return fix_length(tiny_models().build_llava(root / "tiny-llava"), tokens)


def llava_7b_folder(root: Path) -> Path:
    """A LLaVA-1.5-7B-shaped checkpoint without weights (vLLM's `load_format="dummy"` makes random
    ones): CLIP ViT-L/14 at 336 px (576 image tokens) + a 32-layer 4096-wide Llama. The tokenizer is the
    tests' small word-level one, so the vocabulary (and the output layer) is smaller than the real 32k."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaProcessor

    tok = tiny_models().word_tokenizer(
        ["<image>"], extra={"extra_special_tokens": {"image_token": "<image>"}}
    )
    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    )
    text = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
        **ids,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=576,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    # vLLM picks its model class by these names (without them: "No model architectures are specified")
    config.architectures = ["LlavaForConditionalGeneration"]
    config.text_config.architectures = ["LlamaForCausalLM"]
    folder = root / "llava-7b-dummy"
    config.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tiny_models().LLAVA_CHAT,
    ).save_pretrained(folder)
    return folder


def llava_7b_weights(root: Path, tokens: int, device: str = "cuda") -> Path:
    """`llava_7b_folder` with random bf16 weights (about 14 GB, initialised on `device` and saved), for
    the transformers backend where vLLM is missing; every caption exactly `tokens` tokens."""
    import torch
    from transformers import AutoTokenizer, LlavaConfig, LlavaForConditionalGeneration

    folder = llava_7b_folder(root)
    torch.manual_seed(0)
    config = LlavaConfig.from_pretrained(folder)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    tok = AutoTokenizer.from_pretrained(folder)
    generation = model.generation_config
    generation.suppress_tokens = [i for i in tok.all_special_ids if i != tok.eos_token_id]
    generation.do_sample = False
    model.eval().save_pretrained(folder)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return fix_length(folder, tokens)


def variant(image: Image.Image, k: int) -> Image.Image:
    """The `k`th distinct copy of `image`: cropped by 4 px more on each side every second copy, the odd
    ones mirrored (k = 0 is the image itself)."""
    margin = k // 2 * 4
    copy = image.crop((margin, margin, image.width - margin, image.height - margin))
    return copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if k % 2 else copy
