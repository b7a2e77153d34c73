"""The vllm backend: what it sends and how it splits work, tested on CPU without vLLM; the engine path
itself runs on a CUDA machine with vLLM installed (marked gpu)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from captionary.backends import BackendConfig, GenerationParams, OutOfMemory, Request, Result, make_backend
from captionary.backends.base import settings
from captionary.backends.vllm import (
    conversation,
    dispatch,
    engine_gpus,
    engine_kwargs,
    gpu_groups,
    over_limit,
    plain_prompt,
    plan_engines,
    run_isolated,
    sampling_kwargs,
    split_evenly,
    to_result,
    visible_gpus,
)
from captionary.errors import ConfigError

HAS_VLLM = importlib.util.find_spec("vllm") is not None
PHOTOS = sorted((Path(__file__).resolve().parents[2] / "examples" / "photos").rglob("*.jpg"))


def images(n: int) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in PHOTOS[:n]]


def test_engine_arguments_come_from_the_options():
    settings = {
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "max_model_len": None,
        "limit_mm_per_prompt": {"image": 2},
        "mm_processor_kwargs": {},
        "load_format": "dummy",
        "data_parallel": "auto",
        "engine_options": {"max_num_batched_tokens": 8192},
    }
    kwargs = engine_kwargs(BackendConfig("vllm", "Qwen/Qwen2.5-VL-7B-Instruct", "abc123"), settings)
    assert kwargs == {
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "revision": "abc123",
        "tokenizer_revision": "abc123",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.8,
        "limit_mm_per_prompt": {"image": 2},
        "load_format": "dummy",
        "max_num_batched_tokens": 8192,
    }


def test_the_engine_plan_from_default_and_given_options():
    config = BackendConfig("vllm", "llava-hf/llava-1.5-7b-hf")
    plan = plan_engines(config, settings(config), ["0", "1"])
    assert plan.groups == [["0"], ["1"]] and not plan.in_process
    assert plan.kwargs == {
        "model": "llava-hf/llava-1.5-7b-hf",
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.9,
        "limit_mm_per_prompt": {"image": 1},
        "dtype": "auto",
        "enforce_eager": False,
        "load_format": "auto",
        "trust_remote_code": False,
        "seed": 0,
    }
    options = {"tensor_parallel_size": 2, "engine_process": False, "sampling_options": {"top_k": 20}}
    config = BackendConfig("vllm", "m", options=options)
    plan = plan_engines(config, settings(config), ["0", "1"])
    assert plan.groups == [["0", "1"]] and plan.in_process and plan.sampling == {"top_k": 20}


class ListEngine:
    """An engine that answers each prompt with itself, recording what it was sent."""

    def __init__(self, name: str):
        self.name, self.sent, self.queued = name, [], []

    def submit(self, requests):
        self.queued = list(requests)
        self.sent.append([r.prompt for r in requests])

    def collect(self):
        return [Result(texts=[f"{self.name}:{r.prompt}"], finish_reasons=["stop"]) for r in self.queued]


def test_a_batch_is_split_among_engines_and_comes_back_in_order():
    engines = [ListEngine("a"), ListEngine("b"), ListEngine("c")]
    requests = [Request(f"p{i}", images(1)) for i in range(7)]
    requests[3] = Request("p3", images(2))  # over the limit of one image: fails before any engine
    results = dispatch(requests, engines, image_limit=1)
    assert [e.sent for e in engines] == [[["p0", "p1"]], [["p2", "p4"]], [["p5", "p6"]]]
    texts = [r.texts[0] if r.texts else None for r in results]
    assert texts == ["a:p0", "a:p1", "b:p2", None, "b:p4", "c:p5", "c:p6"]
    assert "2 images in one prompt" in results[3].error
    assert dispatch(requests[:1], engines[:1], image_limit=1)[0].texts == ["a:p0"]


@pytest.mark.parametrize(
    ("gpus", "tp", "dp", "expected"),
    [
        (["0", "1", "2", "3"], 1, "auto", [["0"], ["1"], ["2"], ["3"]]),
        (["0", "1", "2", "3"], 2, "auto", [["0", "1"], ["2", "3"]]),
        (["4", "6", "7"], 2, "auto", [["4", "6"]]),  # the odd GPU out stays idle
        (["0", "1", "2", "3"], 1, 2, [["0"], ["1"]]),
        (["0"], 1, "auto", [["0"]]),
        ([], 1, "auto", [[]]),
    ],
)
def test_one_engine_per_group_of_gpus(gpus, tp, dp, expected):
    assert gpu_groups(gpus, tp, dp) == expected


def test_more_engines_than_gpus_is_a_clear_error():
    with pytest.raises(
        ConfigError, match=r"data_parallel=3 x tensor_parallel_size=2 needs 6 GPUs; 4 visible"
    ):
        gpu_groups(["0", "1", "2", "3"], 2, 3)


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


def test_batches_split_evenly_and_in_order():
    for n in range(0, 30):
        for parts in range(1, 6):
            shards = split_evenly(list(range(n)), parts)
            assert len(shards) == parts
            assert [i for shard in shards for i in shard] == list(range(n))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_conversations_carry_images_in_order_then_the_prompt():
    pics = images(2)
    request = Request("Describe.", pics, system="You caption images.")
    assert conversation(request) == [
        {"role": "system", "content": "You caption images."},
        {
            "role": "user",
            "content": [
                {"type": "image_pil", "image_pil": pics[0]},
                {"type": "image_pil", "image_pil": pics[1]},
                {"type": "text", "text": "Describe."},
            ],
        },
    ]
    assert plain_prompt(Request("a photo of", pics[:1])) == {
        "prompt": "a photo of",
        "multi_modal_data": {"image": pics[0]},
    }
    assert plain_prompt(Request("Rewrite.", system="Be brief.")) == {"prompt": "Be brief.\nRewrite."}


def test_sampling_settings():
    assert sampling_kwargs(GenerationParams(max_tokens=50)) == {"max_tokens": 50, "temperature": 0.0, "n": 1}
    params = GenerationParams(max_tokens=9, temperature=0.7, top_p=0.9, seed=3, n=4, stop=("\n\n",))
    assert sampling_kwargs(params) == {
        "max_tokens": 9,
        "temperature": 0.7,
        "n": 4,
        "top_p": 0.9,
        "seed": 3,
        "stop": ["\n\n"],
    }


def test_too_many_images_fail_before_the_engine():
    assert over_limit(Request("x", images(1)), 1) is None
    error = over_limit(Request("x", images(3)), 2)
    assert error is not None and "3 images in one prompt; the engine accepts 2" in error.error


def test_engine_outputs_become_results():
    def completion(text, reason, n_tokens):
        return SimpleNamespace(text=text, finish_reason=reason, token_ids=list(range(n_tokens)))

    output = SimpleNamespace(
        prompt_token_ids=list(range(700)),
        outputs=[completion(" a dog on grass ", "stop", 5), completion("a dog on", "length", 3)],
    )
    assert to_result(output) == Result(
        texts=["a dog on grass", "a dog on"],
        finish_reasons=["stop", "length"],
        prompt_tokens=700,
        completion_tokens=8,
    )


def test_a_rejected_request_is_isolated_and_fails_alone():
    batches: list[list[str]] = []

    def engine(requests):
        batches.append([r.prompt for r in requests])
        if any(r.prompt == "bad" for r in requests):
            raise ValueError("image too large for the encoder")
        return [Result(texts=[r.prompt.upper()], finish_reasons=["stop"]) for r in requests]

    prompts = [f"p{i}" for i in range(16)]
    prompts[11] = "bad"
    results = run_isolated([Request(p) for p in prompts], engine)
    assert [r.texts for r in results] == [[p.upper()] if p != "bad" else [] for p in prompts]
    assert "image too large" in results[11].error
    assert len(batches) <= 2 * math.ceil(math.log2(16)) + 1  # halves, not one request at a time


def test_out_of_memory_is_not_isolated_but_raised():
    def engine(requests):
        raise OutOfMemory("KV cache")

    with pytest.raises(OutOfMemory):
        run_isolated([Request("a"), Request("b")], engine)


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_without_vllm_the_step_fails_when_built_with_the_install_line():
    with pytest.raises(ConfigError, match=r"pip install 'captionary\[vllm\]'"):
        make_backend(BackendConfig("vllm", "Qwen/Qwen2.5-VL-7B-Instruct"))


@pytest.mark.skipif(HAS_VLLM, reason="vllm is installed")
def test_an_engine_process_that_cannot_start_says_why():
    from captionary.backends.vllm_pool import EngineProcess

    engine = EngineProcess(["0"], {"model": "none"})
    try:
        with pytest.raises(RuntimeError, match=r"GPU\(s\) 0: could not start: ModuleNotFoundError.*vllm"):
            engine.wait_ready()
    finally:
        engine.close()
    assert not engine.process.is_alive()


@pytest.mark.slow
def test_engine_processes_share_a_batch_and_answer_like_the_model_in_process(tmp_path):
    """Two engine processes (one per "GPU") running a tiny transformers model in place of vLLM: the
    batch is split between them, images cross the pipe, results come back in order and equal the
    same model run in this process."""
    pytest.importorskip("transformers")
    from tiny_models import tiny_model

    from captionary.backends.vllm_pool import EngineProcess

    folder = tiny_model("llava", tmp_path)
    params = GenerationParams(max_tokens=4)
    requests = [Request("Describe.", [image], params=params) for image in images(6)]
    with make_backend(BackendConfig("transformers", str(folder))) as local:
        expected = [r.texts[0] for r in local.generate(requests)]
    engines = [
        EngineProcess([gpu], {"model": str(folder)}, engine="hf_engine:TransformersEngine")
        for gpu in ("0", "1")
    ]
    try:
        for engine in engines:
            engine.wait_ready()
        results = dispatch(requests, engines, image_limit=1)
    finally:
        for engine in engines:
            engine.close()
    texts = [r.texts[0] for r in results]
    assert texts == [f"[gpu {i // 3}] {text}" for i, text in enumerate(expected)]
    assert all(not e.process.is_alive() for e in engines)


@pytest.mark.gpu
def test_vllm_engine_captions_real_photos(tmp_path, photos):
    """On a CUDA machine with vLLM: the tiny LLaVA through the caption step, batched, cached."""
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from tiny_models import build_llava

    from captionary import Caption, Load, Workspace

    folder = build_llava(tmp_path / "llava")
    options = {"enforce_eager": True, "gpu_memory_utilization": 0.3, "max_model_len": 256, "data_parallel": 1}

    def step():
        return Caption(backend="vllm", model=str(folder), max_tokens=8, batch_size=6, options=options)

    with Workspace(tmp_path / "ws") as ws:
        first = ws.run(Load(photos) >> step(), progress=False)
        second = ws.run(Load(photos) >> step(), progress=False)
        captions = [item["caption"] for item in ws.items()]
    assert first.step("caption").computed + first.step("caption").failed == 12
    assert first.step("caption").computed >= 1 and all(captions)
    assert second.step("caption").computed == 0


def test_engine_gpus_is_what_one_model_copy_takes_when_more_than_one():
    assert engine_gpus({"tensor_parallel_size": 1, "data_parallel": "auto"}) is None
    assert engine_gpus({"tensor_parallel_size": 2, "data_parallel": "auto"}) == 2
    assert engine_gpus({"tensor_parallel_size": 2, "data_parallel": 2}) == 4
