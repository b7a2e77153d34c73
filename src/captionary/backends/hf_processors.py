"""Loading a Hugging Face processor, with an image-only stand-in for Qwen2-VL-style models when the
full processor cannot be built (it needs torchvision for its video half, which a CPU install of torch
often lacks). The stand-in does what the processor does for images: expand each `<|image_pad|>` to the
number of merged patches the image processor reports, tokenize, and return the same tensors.
"""

from __future__ import annotations

from typing import Any


def load_processor(model: str, **kwargs: Any) -> Any:
    """`AutoProcessor.from_pretrained(model)`, or `ImageOnlyProcessor` where only video support fails."""
    import transformers

    try:
        return transformers.AutoProcessor.from_pretrained(model, **kwargs)
    except (ImportError, AttributeError) as exc:
        if "torchvision" not in str(exc).lower() and "VIDEO_PROCESSOR" not in str(exc):
            raise
        common = {k: kwargs[k] for k in ("revision", "trust_remote_code") if k in kwargs}
        tokenizer = transformers.AutoTokenizer.from_pretrained(model, **common)
        if "<|image_pad|>" not in tokenizer.get_vocab():
            raise
        image_processor = transformers.AutoImageProcessor.from_pretrained(model, **kwargs)
        return ImageOnlyProcessor(image_processor, tokenizer)


class ImageOnlyProcessor:
    """Qwen2-VL / Qwen2.5-VL images without the video processor: same inputs as the real processor."""

    image_token = "<|image_pad|>"

    def __init__(self, image_processor: Any, tokenizer: Any):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.chat_template = tokenizer.chat_template
        self.merge = int(getattr(image_processor, "merge_size", 2)) ** 2

    def apply_chat_template(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def __call__(self, text: list[str], images: Any = None, **kwargs: Any) -> Any:
        from transformers import BatchFeature

        flat = (
            [img for group in images for img in group] if images and isinstance(images[0], list) else images
        )
        pixels = self.image_processor(images=flat, return_tensors="pt") if flat else {}
        sizes = iter((pixels["image_grid_thw"].prod(dim=-1) // self.merge).tolist() if flat else [])
        expanded = []
        for prompt in text:
            parts = prompt.split(self.image_token)
            out = parts[0]
            for part in parts[1:]:
                out += self.image_token * int(next(sizes)) + part
            expanded.append(out)
        tokens = self.tokenizer(expanded, add_special_tokens=False, **kwargs)
        return BatchFeature({**tokens, **dict(pixels)}, tensor_type=kwargs.get("return_tensors"))

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)
