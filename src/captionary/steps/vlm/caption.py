"""`caption`: describe each image with a vision-language model (any backend)."""

from __future__ import annotations

from typing import ClassVar

from captionary.steps.vlm.base import GenerativeStep


class Caption(GenerativeStep):
    """Caption images with a VLM: `{model: qwen2.5-vl-7b}` or `{backend: openai, model: gpt-4o-mini}`.

    The prompt is a template over the item's properties (e.g. "Tags: {tags}. Describe the photo.");
    `n` > 1 writes a list; a caption cut off by `max_tokens` sets `<target>_truncated` (or fails the
    item with `on_truncated: fail`).
    """

    name: ClassVar[str] = "caption"
    default_prompt: ClassVar[str] = (
        "Describe this image in one detailed paragraph for a text-to-image training caption: the main "
        "subject, its appearance, the setting, lighting and style. Do not start with 'The image shows'."
    )
