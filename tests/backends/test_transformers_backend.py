"""The transformers backend on tiny random-weight models of six families, built offline from configs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image
from tiny_models import build_llava, tiny_model

from captionary.backends import BackendConfig, GenerationParams, OutOfMemory, Request, make_backend
from captionary.backends.base import is_out_of_memory
from captionary.errors import ConfigError

PHOTOS = sorted((Path(__file__).resolve().parents[2] / "examples" / "photos").rglob("*.jpg"))
FAMILIES = ["llava", "florence2", "blip2", "idefics3", "paligemma", "qwen2_vl", "qwen2_5_vl", "gemma3"]


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


def backend(path: Path, **options):
    return make_backend(BackendConfig("transformers", str(path), options=options))


def photos(n: int) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in PHOTOS[:n]]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_captions_a_left_padded_batch_exactly_as_one_by_one(family, models_root):
    b = backend(tiny_model(family, models_root))
    params = GenerationParams(max_tokens=6)
    requests = [Request("Describe the image.", [img], params=params) for img in photos(4)]
    with b:
        assert b.model_type == {"blip2": "blip-2"}.get(family, family)
        batched = b.generate(requests)
        single = [b.generate([r])[0] for r in requests]
    assert [r.texts for r in batched] == [r.texts for r in single]
    for result in batched:
        assert result.error is None and len(result.texts) == 1 and result.texts[0]
        assert result.finish_reasons[0] in ("stop", "length")
        assert 1 <= result.completion_tokens <= 6
        assert result.prompt_tokens > 4  # image tokens and the prompt
    assert b.model is None  # released by close()


def test_images_reach_the_model(models_root):
    with backend(tiny_model("llava", models_root)) as b:
        params = GenerationParams(max_tokens=4)
        requests = [Request("Describe.", [img], params=params) for img in photos(8)]
        texts = [r.texts[0] for r in b.generate(requests)]
    assert len(set(texts)) > 1


def test_finish_reasons_agree_with_a_longer_token_limit(tmp_path):
    """ "stop" texts stay the same with a higher limit; "length" texts were really cut off."""
    b = backend(build_llava(tmp_path / "llava4", seed=4))  # this seed ends some captions by itself
    images = photos(8)
    with b:
        short = b.generate([Request("Describe.", [i], params=GenerationParams(max_tokens=5)) for i in images])
        long = b.generate([Request("Describe.", [i], params=GenerationParams(max_tokens=12)) for i in images])
    reasons = {r.finish_reasons[0] for r in short}
    assert reasons == {"stop", "length"}
    for s, lg in zip(short, long):
        if s.finish_reasons == ["stop"]:
            assert (s.texts, s.completion_tokens) == (lg.texts, lg.completion_tokens)
        else:
            assert s.completion_tokens == 5 < lg.completion_tokens
            assert lg.texts[0].startswith(s.texts[0]) and len(lg.texts[0]) > len(s.texts[0])


def test_florence2_cut_off_by_its_forced_eos_is_still_length(models_root):
    with backend(tiny_model("florence2", models_root)) as b:
        assert b.prompt(Request("Describe the photo in detail.", photos(1))) == "<MORE_DETAILED_CAPTION>"
        (short,) = b.generate([Request("<CAPTION>", photos(1), params=GenerationParams(max_tokens=4))])
    assert short.finish_reasons == ["length"] and short.completion_tokens == 4


def test_stop_strings_cut_the_text(models_root):
    with backend(tiny_model("blip2", models_root)) as b:
        (free,) = b.generate([Request("a photo of", photos(1), params=GenerationParams(max_tokens=8))])
        words = free.texts[0].split()
        stop = words[2]
        cut = GenerationParams(max_tokens=8, stop=(stop,))
        (stopped,) = b.generate([Request("a photo of", photos(1), params=cut)])
    assert stop not in stopped.texts[0]
    assert free.texts[0].startswith(stopped.texts[0]) and len(stopped.texts[0]) < len(free.texts[0])
    assert stopped.finish_reasons == ["stop"]


def test_sampling_gives_n_texts_repeatable_with_a_seed(models_root):
    params = GenerationParams(max_tokens=6, temperature=1.5, n=3, seed=7)
    with backend(tiny_model("llava", models_root)) as b:
        first = b.generate([Request("Describe.", photos(1), params=params)])[0]
        again = b.generate([Request("Describe.", photos(1), params=params)])[0]
        greedy = b.generate([Request("Describe.", photos(1), params=GenerationParams(max_tokens=6))])[0]
    assert len(first.texts) == len(first.finish_reasons) == 3
    assert first.texts == again.texts
    assert len(set(first.texts)) > 1 or first.texts[0] != greedy.texts[0]


def test_text_only_llm_uses_its_chat_template(models_root):
    with backend(tiny_model("llama_text", models_root)) as b:
        assert not b.is_vlm
        request = Request("Rewrite: a dog on the grass", system="Be brief.")
        assert b.prompt(request) == "Be brief.Rewrite: a dog on the grass Answer:"
        short = GenerationParams(max_tokens=5)
        request.params = short
        results = b.generate([request, Request("Rewrite: a cat on a sofa", params=short)])
    assert all(r.texts and r.completion_tokens >= 1 for r in results)


def test_text_only_and_two_image_requests_to_a_vlm(models_root):
    short = GenerationParams(max_tokens=4)
    with backend(tiny_model("llava", models_root)) as b:
        assert b.prompt(Request("Compare.", photos(2))).count("<image>") == 2
        text_only = b.generate(
            [Request("Rewrite: a dog", params=short), Request("Rewrite: a cat", params=short)]
        )
        pair = Request("Compare.", photos(2), params=short)
        pairs = b.generate([pair, Request("Compare.", photos(3)[1:], params=short)])
        alone = b.generate([pair])
    assert all(r.texts[0] and r.error is None for r in text_only + pairs)
    assert alone[0].texts == pairs[0].texts


def test_requests_a_model_cannot_take_fail_alone(models_root):
    short = GenerationParams(max_tokens=4)  # the tiny models' positions end at 256
    with backend(tiny_model("blip2", models_root)) as b:
        no_image, fine = b.generate(
            [Request("a photo of", params=short), Request("a photo of", photos(1), params=short)]
        )
    assert no_image.error == "blip-2 needs an image in every prompt" and fine.texts[0]
    with backend(tiny_model("llama_text", models_root)) as b:
        (refused,) = b.generate([Request("Describe.", photos(1))])
    assert "is a text model (llama); it reads no images" in refused.error


def test_dtype_is_configurable(models_root):
    import torch

    with backend(tiny_model("idefics3", models_root), dtype="bfloat16") as b:
        assert b.model.dtype == torch.bfloat16
        (result,) = b.generate([Request("Describe.", photos(1), params=GenerationParams(max_tokens=3))])
    assert result.texts[0]


def test_out_of_memory_is_recognisable(models_root):
    import torch

    with backend(tiny_model("llava", models_root)) as b:

        def too_big(**kwargs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        b.model.generate = too_big
        with pytest.raises(OutOfMemory) as caught:
            b.generate([Request("Describe.", [img]) for img in photos(2)])
    assert is_out_of_memory(caught.value) and "2 requests" in str(caught.value)


def test_bad_settings_fail_early_with_the_value(tmp_path):
    with pytest.raises(ConfigError, match=r"dtype must be one of .*'float8'"):
        backend(tmp_path, dtype="float8")
    with pytest.raises(ConfigError, match=r"device must be one of .*'tpu'"):
        backend(tmp_path, device="tpu")
    with pytest.raises(ConfigError, match=r"does not take option.*batch"):
        backend(tmp_path, batch=4)
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match=f"model folder not found: {missing}"):
        backend(missing).preflight()


def test_cuda_asked_for_without_cuda_is_a_clear_error(models_root):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA device"):
        backend(tiny_model("llava", models_root), device="cuda").load()


@pytest.mark.gpu
def test_cuda_is_picked_with_bfloat16_and_batches_still_match(models_root):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    params = GenerationParams(max_tokens=5)
    requests = [Request("Describe.", [img], params=params) for img in photos(4)]
    with backend(tiny_model("qwen2_vl", models_root)) as b:
        assert b.device == "cuda" and b.model.dtype in (torch.bfloat16, torch.float16)
        batched = b.generate(requests)
    assert all(r.texts[0] and r.completion_tokens >= 1 for r in batched)
