"""Tiny random checkpoints of the captioners transformers has no class for, written offline:

- `build_phi3_v`, `build_molmo`, `build_xgenmm`: folders with `config.json` whose `auto_map` names the
  remote code copied next to it (tests/backends/remote_code/), loaded with `trust_remote_code`;
- `build_joycaption_alpha`: a JoyCaption-Alpha-Two-style adapter folder (a tiny SigLIP vision tower,
  `image_adapter.pt`, a tiny Llama with a Llama-3 chat template in `text_model/`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tiny_models import word_tokenizer

CODE = Path(__file__).resolve().parent / "remote_code"
PHI3_CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
LLAMA3_CHAT = (
    "<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def _remote(
    out: Path, family: str, config_cls: str, model_cls: str, auto: str, tok: Any, files: list[str]
) -> Path:
    import importlib

    import torch

    out.mkdir(parents=True, exist_ok=True)
    for name in ["tiny_core.py", *files]:
        shutil.copy(CODE / name, out / name)
    module = importlib.import_module(f"remote_code.modeling_{family}")
    torch.manual_seed(0)
    config = getattr(module, config_cls)(
        vocab_size=len(tok),
        image_token_id=tok.convert_tokens_to_ids("<image>") if "<image>" in tok.get_vocab() else 5,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    auto_map = {"AutoConfig": f"modeling_{family}.{config_cls}", auto: f"modeling_{family}.{model_cls}"}
    config.auto_map = auto_map
    model = getattr(module, model_cls)(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # save_pretrained writes the class's own module path; point auto_map at the copied files
    data = json.loads((out / "config.json").read_text())
    data["auto_map"] = auto_map
    (out / "config.json").write_text(json.dumps(data, indent=2))
    return out


def _processor_map(out: Path, ref: str, key: str = "AutoProcessor", **extra: Any) -> None:
    (out / "preprocessor_config.json").write_text(json.dumps({"auto_map": {key: ref}, **extra}))
    data = json.loads((out / "config.json").read_text())
    data["auto_map"][key] = ref
    (out / "config.json").write_text(json.dumps(data, indent=2))


def build_phi3_v(out: Path) -> Path:
    tok = word_tokenizer(["<|image_1|>", "<|user|>", "<|assistant|>", "<|system|>"], eos="<|end|>")
    tok.chat_template = PHI3_CHAT
    _remote(
        out,
        "phi3_v",
        "Phi3VConfig",
        "Phi3VForCausalLM",
        "AutoModelForCausalLM",
        tok,
        ["modeling_phi3_v.py", "processing_phi3_v.py"],
    )
    _processor_map(out, "processing_phi3_v.Phi3VProcessor")
    return out


def build_molmo(out: Path) -> Path:
    tok = word_tokenizer(["<image>"], eos="<|endoftext|>")
    _remote(
        out,
        "molmo",
        "MolmoConfig",
        "MolmoForCausalLM",
        "AutoModelForCausalLM",
        tok,
        ["modeling_molmo.py", "processing_molmo.py"],
    )
    _processor_map(out, "processing_molmo.MolmoProcessor")
    return out


def build_xgenmm(out: Path) -> Path:
    tok = word_tokenizer(
        ["<image>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], eos="<|endoftext|>"
    )
    _remote(
        out,
        "xgenmm",
        "XGenMMConfig",
        "XGenMMModelForConditionalGeneration",
        "AutoModelForVision2Seq",
        tok,
        ["modeling_xgenmm.py", "image_processing_xgenmm.py"],
    )
    ref = "image_processing_xgenmm.XGenMMImageProcessor"
    _processor_map(out, ref, key="AutoImageProcessor", image_processor_type="XGenMMImageProcessor")
    return out


def build_joycaption_alpha(out: Path, deep: bool = True) -> Path:
    """JoyCaption Alpha Two's layout: vision tower, `image_adapter.pt` (deep-extracted features, start
    and end tokens), `text_model/` (a Llama with the Llama 3 chat template)."""
    import torch
    from tiny_models import SMALL, _text
    from transformers import LlamaConfig, LlamaForCausalLM, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    layers = {**SMALL, "num_hidden_layers": 21}  # deep extraction reads layers 3, 7, 13, 20 and -2
    vision = SiglipVisionModel(SiglipVisionConfig(**layers, image_size=32, patch_size=8))
    vision.save_pretrained(out / "vision_model")
    torch.save(getattr(vision, "vision_model", vision).state_dict(), out / "clip_model.pt")
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = word_tokenizer(specials, eos="<|eot_id|>")
    tok.chat_template = LLAMA3_CHAT
    text = LlamaForCausalLM(LlamaConfig(**_text(tok))).eval()
    with torch.no_grad():
        for p in text.parameters():
            if p.dim() >= 2:
                p.mul_(4.0)
    text.generation_config.min_new_tokens = 1
    text.generation_config.suppress_tokens = [i for i in tok.all_special_ids if i != tok.eos_token_id]
    text.save_pretrained(out / "text_model")
    tok.save_pretrained(out / "text_model")
    hidden = SMALL["hidden_size"]
    width = hidden * (5 if deep else 1)
    adapter = {
        "linear1.weight": torch.randn(text.config.hidden_size, width) * 0.5,
        "linear1.bias": torch.zeros(text.config.hidden_size),
        "linear2.weight": torch.randn(text.config.hidden_size, text.config.hidden_size) * 0.5,
        "linear2.bias": torch.zeros(text.config.hidden_size),
        "other_tokens.weight": torch.randn(3, text.config.hidden_size),
    }
    torch.save(adapter, out / "image_adapter.pt")
    return out


REMOTE_BUILDERS = {
    "phi3_v": build_phi3_v,
    "molmo": build_molmo,
    "xgenmm": build_xgenmm,
    "joycaption_alpha": build_joycaption_alpha,
}
