"""`compose_caption`: an LLM writes the final caption from properties (caption, tags, ...)."""

from __future__ import annotations

from typing import ClassVar

from captionary.steps.vlm.base import GenerativeStep


class ComposeCaption(GenerativeStep):
    """Write the final caption from other properties with an LLM (text only; any backend).

    The prompt names what to combine, e.g. "Merge into one caption. Caption: {caption} Tags: {tags}";
    only those properties are the step's input, so the cache keeps results until they change.
    """

    name: ClassVar[str] = "compose_caption"
    reads_image: ClassVar[bool] = False
    preset_prompts: ClassVar[bool] = False
    default_prompt: ClassVar[str] = (
        "Rewrite the following image description and tags into one fluent caption of at most three "
        "sentences for training a text-to-image model. Keep every visual fact; invent nothing. Answer "
        "with the caption only.\nDescription: {caption}\nTags: {tags}"
    )
