"""The `openai` image backend against a real HTTP server on 127.0.0.1 answering in the images API's
shape, with rate limits and server errors: every image arrives, nothing is lost, failures fail alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("httpx")

from images_server import FakeImagesAPI, prompt_colour
from PIL import Image

from captionary import GenerateImage, LoadManifest, Save, Workspace
from captionary.backends.base import BackendConfig
from captionary.backends.images import ImageParams, ImageRequest, make_image_backend
from captionary.errors import ParamError

FAST_RETRIES = {"retry_backoff": 0.01, "max_retry_wait": 0.05}


def backend(url: str, **options: object):
    return make_image_backend(
        BackendConfig("openai", "gpt-image-1", None, {"base_url": url, **FAST_RETRIES, **options})
    )


def test_images_arrive_at_the_asked_size_after_429_and_500() -> None:
    script = {"dog": ["429:0", "500"], "cat": ["500", "500"]}
    with FakeImagesAPI(script=script) as api:
        images = backend(api.url, concurrency=2)
        params = ImageParams(height=24, width=40)
        requests = [
            ImageRequest(p, seed=i, params=params) for i, p in enumerate(["a dog", "a cat", "a teapot"])
        ]
        with images:
            results = images.generate(requests)
            usage = images.usage()
    assert [r.error for r in results] == [None, None, None]
    for request, result in zip(requests, results):
        assert result.image.size == (40, 24)
        assert result.image.getpixel((3, 3)) == prompt_colour(request.prompt)
    assert api.statuses("dog") == [429, 500, 200]
    assert api.statuses("cat") == [500, 500, 200]
    assert usage == {"http_requests": 7, "retries": 4}
    body = api.hits[-1][1]
    assert body["size"] == "40x24" and body["response_format"] == "b64_json" and body["n"] == 1


def test_a_request_that_keeps_failing_fails_alone() -> None:
    script = {"bad": ["400"], "slow": ["500"] * 10, "junk": ["bad-b64"]}
    with FakeImagesAPI(script=script) as api, backend(api.url, max_retries=2) as images:
        results = images.generate([ImageRequest(p, 0) for p in ["bad", "slow", "junk", "fine"]])
    assert "HTTP 400" in results[0].error and "safety system" in results[0].error
    assert "HTTP 500" in results[1].error and "gave up after 3 attempts" in results[1].error
    assert "malformed images answer" in results[2].error
    assert results[3].error is None and results[3].image is not None
    assert api.statuses("bad") == [400]  # a 400 is not retried


def test_diffusion_only_settings_fail_the_item_not_silently() -> None:
    with FakeImagesAPI() as api, backend(api.url) as images:
        (result,) = images.generate([ImageRequest("x", 0, ImageParams(guidance_scale=3.5))])
    assert result.error == "an images API takes no guidance_scale"
    assert api.hits == []


def test_generate_image_step_over_the_api_loses_nothing(tmp_path: Path) -> None:
    """Prompts of a manifest's images regenerated through the API under 429/500s: every item gets its
    image, the run summary counts requests and retries, a re-run sends nothing."""
    photos = Path(__file__).resolve().parents[2] / "examples" / "photos" / "dog"
    rows = [{"image": str(photos / f"0{i}.jpg"), "caption": f"prompt {i}"} for i in range(4)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = {"prompt 0": ["429:0"], "prompt 2": ["500", "500"]}
    with FakeImagesAPI(script=script) as api:
        step = GenerateImage(
            model="gpt-image-1",
            base_url=api.url,
            prompt="{caption}",
            width=32,
            height=16,
            concurrency=4,
            options=FAST_RETRIES,
        )
        pipeline = LoadManifest(str(manifest)) >> step >> Save(str(tmp_path / "out"), image_format="png")
        ws = Workspace(tmp_path / "ws")
        summary = ws.run(pipeline)
        sent = len(api.hits)
        again = ws.run(pipeline)
        assert len(api.hits) == sent
    stats = summary.steps[1]
    assert (stats.computed, stats.failed) == (4, 0)
    assert stats.usage["requests"] == 4 and stats.usage["retries"] == 3 and stats.usage["http_requests"] == 7
    assert stats.usage["output_tokens"] == 4 * 272
    assert again.steps[1].computed == 0 and again.steps[1].cached == 4
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 4
    for file in files:
        caption = (file.with_suffix(".txt")).read_text().strip()
        with Image.open(file) as image:
            assert image.size == (32, 16) and image.getpixel((1, 1)) == prompt_colour(caption)


def test_openai_backend_is_chosen_by_base_url_and_checks_options() -> None:
    with pytest.raises(ParamError, match="does not take option"):
        GenerateImage(
            model="gpt-image-1", base_url="http://127.0.0.1:1/v1", options={"enable_model_cpu_offload": True}
        )
