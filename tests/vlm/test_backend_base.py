"""The backend interface: registry, option checks, cache identity, presets, out-of-memory detection."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from captionary import ConfigError
from captionary.backends import (
    BACKENDS,
    Backend,
    BackendConfig,
    GenerationParams,
    OutOfMemory,
    Request,
    Result,
    backend_class,
    cache_identity,
    find_preset,
    is_out_of_memory,
    make_backend,
    model_label,
)


class EchoBackend(Backend):
    """Repeats the prompt; enough to check the base class's bookkeeping."""

    name: ClassVar[str] = "t_echo"
    options: ClassVar[dict[str, Any]] = {"dtype": "float32", "device": "cpu"}
    cache_options: ClassVar[tuple[str, ...]] = ("dtype",)

    def generate(self, requests):
        return [Result([r.prompt] * r.params.n, ["stop"] * r.params.n) for r in requests]


@pytest.fixture
def echo(monkeypatch):
    monkeypatch.setitem(BACKENDS, "t_echo", f"{__name__}:EchoBackend")
    return EchoBackend


def test_unknown_backend_suggests_close_names():
    with pytest.raises(ConfigError, match=r"unknown backend 'opnai'; did you mean openai\?"):
        backend_class("opnai")


def test_unknown_option_and_missing_model_fail_before_any_work(echo):
    expected = r"does not take option\(s\) base_url \(its options: device, dtype, max_image_edge\)"
    with pytest.raises(ConfigError, match=expected):
        make_backend(BackendConfig("t_echo", "m", options={"base_url": "http://x"}))
    with pytest.raises(ConfigError, match="needs a model"):
        make_backend(BackendConfig("t_echo", ""))


def test_backend_generates_one_result_per_request_and_merges_defaults(echo):
    with make_backend(BackendConfig("t_echo", "m", options={"device": "meta"})) as backend:
        assert backend.settings == {"dtype": "float32", "device": "meta", "max_image_edge": None}
        results = backend.generate([Request("a", params=GenerationParams(n=2)), Request("b")])
    assert [r.texts for r in results] == [["a", "a"], ["b"]]


def test_cache_identity_holds_what_changes_outputs_only(echo):
    base = cache_identity(BackendConfig("t_echo", "m"))
    options = {"dtype": "float32", "max_image_edge": None}
    assert base == {"backend": "t_echo", "model": "m", "revision": None, "options": options}
    assert cache_identity(BackendConfig("t_echo", "m", options={"dtype": "float32"})) == base  # a default
    assert cache_identity(BackendConfig("t_echo", "m", options={"device": "cuda"})) == base
    assert cache_identity(BackendConfig("t_echo", "m", options={"dtype": "bfloat16"})) != base
    assert cache_identity(BackendConfig("t_echo", "m", revision="abc")) != base
    assert cache_identity(BackendConfig("t_echo", "m", options={"max_image_edge": 512})) != base
    assert model_label(BackendConfig("t_echo", "m", revision="abc")) == "t_echo:m@abc"


def test_request_messages_put_image_placeholders_before_the_text():
    request = Request("describe", images=["img1", "img2"], system="be brief")  # type: ignore[list-item]
    assert request.messages() == [
        {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "describe"}],
        },
    ]


def test_out_of_memory_is_recognised_by_type_name_and_message():
    class OutOfMemoryError(RuntimeError):  # torch's class name
        pass

    assert is_out_of_memory(OutOfMemory())
    assert is_out_of_memory(OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_result_flags_truncation():
    assert Result(["a", "b"], ["stop", "length"]).truncated
    assert not Result(["a"], ["stop"]).truncated


def test_an_unknown_preset_is_a_plain_model_id():
    assert find_preset("surely/not-a-preset-name") is None


def test_a_backend_can_be_named_by_import_path():
    assert backend_class(f"{__name__}:EchoBackend") is EchoBackend
    with make_backend(BackendConfig(f"{__name__}:EchoBackend", "m")) as backend:
        assert [r.texts for r in backend.generate([Request("hi")])] == [["hi"]]
    with pytest.raises(ConfigError, match=r"cannot import 'Nope' from 'json'"):
        backend_class("json:Nope")
    with pytest.raises(ConfigError, match=r"cannot import 'X' from 'no_such_module_here'"):
        backend_class("no_such_module_here:X")
    with pytest.raises(ConfigError, match=r"not a captionary.backends.Backend subclass"):
        backend_class("json:JSONDecoder")
