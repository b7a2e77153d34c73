"""`openai` image backend: an OpenAI-compatible images endpoint (`POST /v1/images/generations`).

The transport is the chat backend's (`backends/openai.py`): concurrency, retries of 429/5xx/timeouts
with backoff and `Retry-After`, the API key from `api_key_env`. Each request asks for one image as
`b64_json` at `{width}x{height}`; `quality`, `style` and other fields go in `extra_body`. The service
takes no seed, so the same request may give a different image: the seed still enters the cache key,
and the stored image is what later runs reuse.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from typing import Any, ClassVar

from captionary.backends.http_loop import HttpLoop
from captionary.backends.images import ImageBackend, ImageRequest, ImageResult
from captionary.backends.openai import OpenAIBackend

UNSUPPORTED = ("guidance_scale", "num_inference_steps", "negative_prompt", "max_sequence_length")
"""Diffusion settings an images API has no field for: asking for them fails the item, not silently."""


class OpenAIImagesBackend(OpenAIBackend, ImageBackend):
    """Images over HTTP: one request per image, concurrent, with the chat backend's retries."""

    name: ClassVar[str] = "openai"
    options: ClassVar[dict[str, Any]] = {
        **{k: v for k, v in OpenAIBackend.options.items() if k != "jpeg_quality"},
        "response_format": "b64_json",  # gpt-image-1 always answers b64_json and rejects the field: null
    }
    cache_options: ClassVar[tuple[str, ...]] = ("extra_body", "response_format")
    reproducible: ClassVar[bool] = False

    def generate(self, requests: Sequence[ImageRequest]) -> list[ImageResult]:  # type: ignore[override]
        http = self._http or self._loaded()
        futures = [http.submit(self._image(http, request)) for request in requests]
        return [future.result() for future in futures]

    async def _image(self, http: HttpLoop, request: ImageRequest) -> ImageResult:
        params = request.params.as_dict()
        refused = [k for k in UNSUPPORTED if k in params]
        if refused:
            return ImageResult(error=f"an images API takes no {', '.join(refused)}")
        body: dict[str, Any] = {"model": self.config.model, "prompt": request.prompt, "n": 1}
        if "width" in params or "height" in params:
            if not ("width" in params and "height" in params):
                return ImageResult(error="give both width and height (the API takes a size WxH)")
            body["size"] = f"{params.pop('width')}x{params.pop('height')}"
        if self.settings["response_format"]:
            body["response_format"] = self.settings["response_format"]
        body.update(params)  # ImageParams.extra: other API fields
        body.update(self.settings["extra_body"] or {})
        async with http.slots:
            answer = await self._post_async(http, body, "/images/generations")
        if isinstance(answer, str):
            return ImageResult(error=answer)
        return await http.in_thread(lambda: _decoded(answer))

    def usage(self) -> dict[str, int]:
        with self._lock:
            counts = {"http_requests": self.requests_sent, "retries": self.retries}
            self.requests_sent = self.retries = 0
        return {k: v for k, v in counts.items() if v}


def _decoded(answer: dict[str, Any]) -> ImageResult:
    """The image of an images API answer (base64 PNG/JPEG), or what is wrong with the answer."""
    from PIL import Image

    try:
        data = base64.b64decode(answer["data"][0]["b64_json"], validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
    except (KeyError, IndexError, TypeError, binascii.Error, OSError) as exc:
        return ImageResult(error=f"malformed images answer ({type(exc).__name__}: {exc}): {answer!r:.200}")
    usage = answer.get("usage") or {}
    return ImageResult(
        image=image,
        usage={
            "requests": 1,
            "input_tokens": int(usage.get("input_tokens", 0) or 0),
            "output_tokens": int(usage.get("output_tokens", 0) or 0),
        },
    )
