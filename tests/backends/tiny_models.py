"""Tiny random-weight vision-language models built offline from configs (no hub, no download).

Each `build_*` writes a folder that `AutoProcessor` / `AutoModelForImageTextToText.from_pretrained`
load like a real checkpoint: `config.json`, `model.safetensors`, tokenizer and processor files (and a
chat template where the real model family has one). Recipes: ../shared/notes/offline_models.md §4.
The tokenizer is a word-level one trained on a small corpus, so random models emit readable words.
Outputs are random but deterministic (fixed seed, greedy decoding).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPUS = [
    "a photo of a dog sitting on the grass",
    "a red backpack on a wooden floor",
    "a cat lying on a sofa",
    "a teapot on a table",
    "a close-up photo of a person smiling",
    "a toy robot in front of a white wall",
    "text on a page",
    "a colorful sneaker",
    "Describe the image.",
    "What is in the picture?",
    "Caption:",
    "Answer:",
]

LLAVA_CHAT = (
    "{% for m in messages %}{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %} Answer:{% endif %}"
)
QWEN_CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEMMA_CHAT = (
    "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<start_of_image>{% else %}"
    "{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
IDEFICS_CHAT = (
    "<|begin_of_text|>{% for m in messages %}{{ m['role'] | capitalize }}:{% if m['content'] is string %}"
    "{{ m['content'] }}{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
"""The size of every tiny transformer (vision and text)."""


def word_tokenizer(special: list[str], *, eos: str = "</s>", extra: dict[str, Any] | None = None) -> Any:
    """A word-level fast tokenizer over CORPUS with `special` tokens (ids right after the 4 basics)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    basics = ["<unk>", "<s>", "</s>", "<pad>"]
    words = sorted({w for line in CORPUS for w in re.findall(r"\w+|[^\w\s]", line.lower())})
    tokens = list(dict.fromkeys([*basics, eos, *special, *words]))
    tok = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    kwargs: dict[str, Any] = {
        "unk_token": "<unk>",
        "bos_token": "<s>",
        "eos_token": eos,
        "pad_token": "<pad>",
    }
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs, **(extra or {}))
    fast.add_special_tokens({"additional_special_tokens": [s for s in special if s not in kwargs.values()]})
    return fast


def _text_ids(tok: Any) -> dict[str, int]:
    return {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def _text(tok: Any, **changes: Any) -> dict[str, Any]:
    """A tiny decoder's config for `tok` (Llama-style names), with `changes`."""
    base = {"vocab_size": len(tok), **SMALL, "num_key_value_heads": 2, "max_position_embeddings": 256}
    return {**base, **_text_ids(tok), **changes}


def _save(out: Path, model: Any, processor: Any) -> Path:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():  # larger weights: the image visibly changes the (random) words
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    tok = getattr(processor, "tokenizer", processor)
    # random weights would often emit only special tokens (<unk>, <loc_*>); a real checkpoint emits words
    model.generation_config.suppress_tokens = [i for i in tok.all_special_ids if i != tok.eos_token_id]
    model.generation_config.min_new_tokens = 1  # never an empty caption, whatever the CPU's rounding
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_llava(out: Path, seed: int = 2) -> Path:
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    tok = word_tokenizer(["<image>"], extra={"extra_special_tokens": {"image_token": "<image>"}})
    vision = CLIPVisionConfig(**SMALL, image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(**_text(tok), architectures=["LlamaForCausalLM"])  # vLLM builds the LM from it
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=16,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = LlavaProcessor(
        image_processor=ip,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT,
    )
    return _save(out, LlavaForConditionalGeneration(cfg).eval(), proc)


def build_florence2(out: Path, seed: int = 4) -> Path:
    import torch
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )

    torch.manual_seed(seed)
    tasks = ["<OCR>", "<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OD>"]
    locs = [f"<loc_{i}>" for i in range(1000)]
    tok = word_tokenizer(
        ["<image>", *tasks, *locs], extra={"extra_special_tokens": {"image_token": "<image>"}}
    )
    text = BartConfig(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=tok.bos_token_id,
        **_text_ids(tok),
    )
    vision = dict(
        depths=[1, 1, 1, 1],
        embed_dim=[16, 16, 32, 32],
        num_heads=[2] * 4,
        num_groups=[2] * 4,
        window_size=2,
        projection_dim=32,
        max_position_embeddings=16,
        max_temporal_embeddings=4,
    )
    cfg = Florence2Config(
        vision_config=vision, text_config=text.to_dict(), image_token_id=tok.convert_tokens_to_ids("<image>")
    )
    ip = CLIPImageProcessor(size={"height": 64, "width": 64}, do_center_crop=False, image_seq_length=5)
    post = {"pure_text": {}, "ocr": {"pattern": r"(.+?)<loc_(\d+)>", "area_threshold": 0.0}}
    post |= {"description_with_bboxes": {}, "bboxes": {}}
    proc = Florence2Processor(image_processor=ip, tokenizer=tok, post_processor_config=post)
    return _save(out, Florence2ForConditionalGeneration(cfg).eval(), proc)


def build_blip2(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        OPTConfig,
    )

    torch.manual_seed(seed)
    tok = word_tokenizer([])  # Blip2Processor adds its own <image> token
    ip = BlipImageProcessor(size={"height": 32, "width": 32})
    proc = Blip2Processor(image_processor=ip, tokenizer=tok, num_query_tokens=4)
    tok = proc.tokenizer
    vision = dict(**SMALL, image_size=32, patch_size=8)
    qformer = dict(**SMALL, encoder_hidden_size=32, vocab_size=len(tok))
    text = OPTConfig(
        vocab_size=len(tok),
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        max_position_embeddings=256,
        **_text_ids(tok),
    )
    cfg = Blip2Config(
        vision_config=vision,
        qformer_config=qformer,
        text_config=text.to_dict(),
        num_query_tokens=4,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    return _save(out, Blip2ForConditionalGeneration(cfg).eval(), proc)


def build_idefics3(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    torch.manual_seed(seed)
    special = [
        "<image>",
        "<fake_token_around_image>",
        "<global-img>",
        "<end_of_utterance>",
        "<|begin_of_text|>",
    ]
    tok = word_tokenizer(special, extra={"extra_special_tokens": {"image_token": "<image>"}})
    vision = dict(**SMALL, image_size=32, patch_size=8)
    text = _text(tok, max_position_embeddings=512)
    cfg = Idefics3Config(
        vision_config=vision,
        text_config=text,
        scale_factor=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        pad_token_id=tok.pad_token_id,
    )
    ip = Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32}
    )
    proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=IDEFICS_CHAT)
    return _save(out, Idefics3ForConditionalGeneration(cfg).eval(), proc)


def build_paligemma(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    torch.manual_seed(seed)
    tok = word_tokenizer(["<image>"], extra={"extra_special_tokens": {"image_token": "<image>"}})
    vision = dict(**SMALL, image_size=32, patch_size=8, projection_dim=32)
    text = GemmaConfig(**_text(tok, num_key_value_heads=1, head_dim=16))
    cfg = PaliGemmaConfig(
        vision_config=vision,
        text_config=text.to_dict(),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        projection_dim=32,
    )
    ip = SiglipImageProcessor(size={"height": 32, "width": 32})
    ip.image_seq_length = 16
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    return _save(out, PaliGemmaForConditionalGeneration(cfg).eval(), proc)


def build_qwen2_vl(out: Path, seed: int = 0, version: str = "2") -> Path:
    """Qwen2-VL (`version="2.5"`: Qwen2.5-VL, windowed vision attention). Without torchvision their
    processor cannot be built (video processor), so the folder gets the tokenizer and an
    image-processor config; the backend assembles the processor from those."""
    import torch
    import transformers
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    special = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_start|>"]
    tok = word_tokenizer(special, eos="<|im_end|>")
    tok.chat_template = QWEN_CHAT
    ids = {s: tok.convert_tokens_to_ids(s) for s in special}
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    text = _text(tok, max_position_embeddings=512, rope_parameters=rope)
    vision: dict[str, Any] = dict(
        depth=2, hidden_size=32, num_heads=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2
    )
    if version == "2.5":  # window attention in block 0, full attention in block 1
        vision |= dict(intermediate_size=64, window_size=16, out_hidden_size=32, fullatt_block_indexes=[1])
    else:
        vision |= dict(embed_dim=32, mlp_ratio=2)
    prefix = "Qwen2_5_VL" if version == "2.5" else "Qwen2VL"
    cfg = getattr(transformers, f"{prefix}Config")(
        vision_config=vision,
        text_config=text,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    ip = Qwen2VLImageProcessorPil(
        patch_size=4,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64},
    )
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(cfg).eval()
    _save(out, model, tok)
    ip.save_pretrained(out)
    config = json.loads((out / "preprocessor_config.json").read_text())
    config["processor_class"] = "Qwen2VLProcessor"
    (out / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
    return out


def build_gemma3(out: Path, seed: int = 0) -> Path:
    """Gemma 3: SigLIP + Gemma 3 text (sliding-window layers), 4 soft tokens per image."""
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    torch.manual_seed(seed)
    special = ["<start_of_image>", "<end_of_image>", "<image_soft_token>", "<start_of_turn>"]
    names = {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    }
    tok = word_tokenizer(special, eos="<end_of_turn>", extra={"extra_special_tokens": names})
    text = _text(tok, num_key_value_heads=1, head_dim=16, max_position_embeddings=512, sliding_window=64)
    vision = dict(**SMALL, image_size=32, patch_size=8)
    cfg = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
    )
    ip = Gemma3ImageProcessor(size={"height": 32, "width": 32})
    proc = Gemma3Processor(image_processor=ip, tokenizer=tok, chat_template=GEMMA_CHAT, image_seq_length=4)
    return _save(out, Gemma3ForConditionalGeneration(cfg).eval(), proc)


def build_llama_text(out: Path, seed: int = 0) -> Path:
    """A text-only causal LM with a chat template (for `compose_caption` on the transformers backend)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = word_tokenizer([])
    tok.chat_template = LLAVA_CHAT
    return _save(out, LlamaForCausalLM(LlamaConfig(**_text(tok))).eval(), tok)


BUILDERS: dict[str, Callable[..., Path]] = {
    "llava": build_llava,
    "florence2": build_florence2,
    "blip2": build_blip2,
    "idefics3": build_idefics3,
    "paligemma": build_paligemma,
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": lambda out, seed=0: build_qwen2_vl(out, seed, version="2.5"),
    "gemma3": build_gemma3,
    "llama_text": build_llama_text,
}

_BUILT: dict[str, Path] = {}


def tiny_model(name: str, root: Path) -> Path:
    """The tiny model `name`, built under `root` the first time it is asked for in this process (so a
    test session builds each model once, whichever test file asks first)."""
    if name not in _BUILT:
        _BUILT[name] = BUILDERS[name](root / name)
    return _BUILT[name]
