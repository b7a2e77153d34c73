"""Presets: good prompts and settings for common captioners, so `caption: {model: qwen2.5-vl-7b}` works.

A preset names a backend, a model id (Hugging Face id or API model name), an optional revision, a
prompt (and system prompt) and generation settings; the step's own parameters override any of them,
including the backend (`{model: qwen2.5-vl-7b, backend: vllm}` runs the same model on vLLM). Models
on the hub default to the `transformers` backend, which runs on CUDA, MPS or CPU; presets carry only
options every local backend takes (`trust_remote_code`), so switching to vLLM keeps them valid.
`Preset.vllm` says whether vLLM supports the architecture (None: not checked).
"""

from __future__ import annotations

from captionary.backends.base import Preset

CAPTION_PROMPT = (
    "Describe this image in detail as a caption for training a text-to-image model: the main subject, "
    "its appearance and pose, the setting and background, lighting, colours, camera angle and style. "
    "Write one paragraph of plain prose. Do not begin with 'The image shows' or 'This image'."
)
"""The prompt of instruction-following models without a preferred prompt of their own."""


def _hf(model: str, *, prompt: str = CAPTION_PROMPT, max_tokens: int = 300) -> Preset:
    return Preset(backend="transformers", model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.0)


def _remote(model: str, *, vllm: bool) -> Preset:
    """A model that ships its own code: trusted to run it (read its code first)."""
    return Preset(
        backend="transformers",
        model=model,
        prompt=CAPTION_PROMPT,
        max_tokens=300,
        temperature=0.0,
        options={"trust_remote_code": True},
        vllm=vllm,
    )


def _api(model: str, **options: object) -> Preset:
    return Preset(
        backend="openai", model=model, prompt=CAPTION_PROMPT, max_tokens=300, temperature=0.0, options=options
    )


JOYCAPTION_SYSTEM = "You are a helpful image captioner."
JOYCAPTION_PROMPT = "Write a long descriptive caption for this image in a formal tone."

PRESETS: dict[str, Preset] = {
    # Qwen2.5-VL: strong general captioner; dynamic resolution (the step's max_image_edge bounds tokens)
    "qwen2.5-vl-3b": _hf("Qwen/Qwen2.5-VL-3B-Instruct"),
    "qwen2.5-vl-7b": _hf("Qwen/Qwen2.5-VL-7B-Instruct"),
    "qwen2.5-vl-32b": _hf("Qwen/Qwen2.5-VL-32B-Instruct"),
    "qwen2.5-vl-72b": _hf("Qwen/Qwen2.5-VL-72B-Instruct"),
    # JoyCaption (LLaVA architecture, Llama 3.1 + SigLIP), trained for diffusion captions; its card
    # recommends sampling at temperature 0.6
    "joycaption": Preset(
        backend="transformers",
        model="fancyfeast/llama-joycaption-beta-one-hf-llava",
        prompt=JOYCAPTION_PROMPT,
        system=JOYCAPTION_SYSTEM,
        max_tokens=512,
        temperature=0.6,  # the model card's sampling settings
        top_p=0.9,
    ),
    # Florence-2 takes task tokens, not instructions; its output is post-processed per task
    "florence-2-base": _hf(
        "florence-community/Florence-2-base", prompt="<MORE_DETAILED_CAPTION>", max_tokens=256
    ),
    "florence-2-large": _hf(
        "florence-community/Florence-2-large", prompt="<MORE_DETAILED_CAPTION>", max_tokens=256
    ),
    # LLaVA family
    "llava-1.5-7b": _hf("llava-hf/llava-1.5-7b-hf"),
    "llava-1.6-mistral-7b": _hf("llava-hf/llava-v1.6-mistral-7b-hf"),
    "llava-onevision-7b": _hf("llava-hf/llava-onevision-qwen2-7b-ov-hf"),
    # Llama 3.2 Vision (gated on the hub: accept the licence and log in first)
    "llama-3.2-11b-vision": _hf("meta-llama/Llama-3.2-11B-Vision-Instruct"),
    # Gemma 3 (gated on the hub)
    "gemma-3-4b": _hf("google/gemma-3-4b-it"),
    "gemma-3-12b": _hf("google/gemma-3-12b-it"),
    "gemma-3-27b": _hf("google/gemma-3-27b-it"),
    # SmolVLM: small enough for CPU and MPS
    "smolvlm2-2.2b": _hf("HuggingFaceTB/SmolVLM2-2.2B-Instruct"),
    # BLIP-2 continues a text prefix; short captions
    "blip2-opt-2.7b": _hf("Salesforce/blip2-opt-2.7b", prompt="a photo of", max_tokens=60),
    # Models that ship their own code (trust_remote_code: their processor and generate conventions,
    # driven by backends/hf_families.py). vLLM: Phi-3-Vision and Molmo yes, BLIP-3 no.
    "phi-3-vision": _remote("microsoft/Phi-3-vision-128k-instruct", vllm=True),
    "phi-3.5-vision": _remote("microsoft/Phi-3.5-vision-instruct", vllm=True),
    "molmo-7b-d": _remote("allenai/Molmo-7B-D-0924", vllm=True),
    "molmo-7b-o": _remote("allenai/Molmo-7B-O-0924", vllm=True),
    "xgen-mm": _remote("Salesforce/xgen-mm-phi3-mini-instruct-interleave-r-v1.5", vllm=False),
    # JoyCaption Alpha Two: a LLaVA-style adapter with no transformers class (backends/llava_adapter.py).
    # Its checkpoint folder (cgrkzexw-599808: image_adapter.pt, clip_model.pt, text_model/ (a LoRA on
    # Llama 3.1 8B Instruct: needs peft)) comes from the fancyfeast/joy-caption-alpha-two Space; name
    # the downloaded folder: `model: ./cgrkzexw-599808` with the prompt and settings below. No vLLM.
    "joycaption-alpha-two": Preset(
        backend="transformers",
        model="./cgrkzexw-599808",
        prompt=JOYCAPTION_PROMPT,
        system=JOYCAPTION_SYSTEM,
        max_tokens=300,
        temperature=0.6,
        top_p=0.9,
        options={"vision_model": "google/siglip-so400m-patch14-384"},
        vllm=False,
    ),
    # GPT-4o-class APIs through the OpenAI-compatible backend (key from OPENAI_API_KEY / GEMINI_API_KEY)
    "gpt-4o": _api("gpt-4o"),
    "gpt-4o-mini": _api("gpt-4o-mini"),
    "gpt-4.1-mini": _api("gpt-4.1-mini"),
    "gemini-2.5-flash": _api(
        "gemini-2.5-flash",
        base_url="https://generativelanguage.googleapis.com/v1beta/openai",
        api_key_env="GEMINI_API_KEY",
    ),
}
