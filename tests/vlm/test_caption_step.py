"""`caption` end to end: real photos, a real workspace, a local OpenAI-compatible server.

Only cache misses reach the model, the cache key holds what changes captions (and nothing else),
failures are isolated and retried without paying twice, token usage reaches the run summary.
"""

from __future__ import annotations

import json
import threading

import pytest
from openai_server import FakeOpenAI

from captionary import Caption, ConfigError, Load, ParamError, Resize, Workspace, parse_pipeline
from captionary.cli import main

FAST = {"retry_backoff": 0.01, "max_retries": 3}


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def caption(server: FakeOpenAI, **params) -> Caption:
    settings = {
        "backend": "openai",
        "model": "test-vlm",
        "base_url": server.url,
        "prompt": "Describe {name}.",
    }
    return Caption(**{**settings, "max_image_edge": 128, **params})


def run(ws_path, photos, step, **kwargs):
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> step, progress=False, **kwargs)
        return summary, {item.name: item.props for item in ws.items()}


def test_yaml_pipeline_captions_saves_and_second_run_makes_no_request(photos, tmp_path, server, capsys):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        "workspace: ws\n"
        "steps:\n"
        "  - load: {path: photos}\n"
        f"  - caption: {{backend: openai, model: test-vlm, base_url: '{server.url}',\n"
        "              prompt: 'Describe {name}.', max_image_edge: 128, batch_size: 4}\n"
        "  - save: {path: out, format: kohya, json_sidecar: true}\n"
    )
    assert main(["run", str(pipeline), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert len(server.hits) == 12
    assert sorted(h.prompt for h in server.hits) == sorted(
        f"Describe {p.parent.name}/{p.stem}." for p in photos.rglob("*.jpg")
    )
    text = (tmp_path / "out" / "dog" / "00.txt").read_text()
    assert text.startswith("a 128x") and text.strip().endswith("for: Describe dog/00.")
    sidecar = json.loads((tmp_path / "out" / "dog" / "00.json").read_text())
    assert sidecar["caption_truncated"] is False
    prompt_tokens = sum(len(h.prompt.split()) + 85 for h in server.hits)
    assert f"caption: requests 12, prompt tokens {prompt_tokens:,}, completion tokens" in first

    assert main(["run", str(pipeline), "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert len(server.hits) == 12  # nothing reached the model
    [row] = [line for line in second.splitlines() if line.startswith("caption ")]
    assert row.split()[1:6] == ["12", "12", "0", "12", "0"]  # in, out, computed 0, cached 12
    assert "requests" not in second  # no usage: the model was never loaded


def test_cache_key_holds_model_prompt_and_generation_params_only(photos, ws_path, server, monkeypatch):
    run(ws_path, photos, caption(server, batch_size=4))
    assert len(server.hits) == 12
    monkeypatch.setenv("OTHER_KEY", "sk-x")
    same = caption(server, batch_size=7, concurrency=2, timeout=5.0, api_key_env="OTHER_KEY")
    summary, _ = run(ws_path, photos, same)
    assert len(server.hits) == 12 and summary.step("caption").cached == 12
    with FakeOpenAI() as moved:  # the same model served elsewhere: still the same captions
        run(ws_path, photos, caption(moved))
        assert moved.hits == []
    for changed in (
        {"prompt": "Describe {name} briefly."},
        {"max_tokens": 100},
        {"temperature": 0.5},
        {"seed": 1},
        {"revision": "v2"},
        {"model": "other-vlm"},
        {"max_image_edge": 64},
    ):
        before = len(server.hits)
        summary, _ = run(ws_path, photos, caption(server, **changed))
        assert len(server.hits) - before == 12, changed
        assert summary.step("caption").computed == 12


def test_failures_are_isolated_retried_and_never_paid_twice(photos, ws_path, server):
    server.script = {"dog/00": ["429:0", "500"], "cat/00": ["500", "500"], "cat/01": ["400"]}
    summary, props = run(ws_path, photos, caption(server, batch_size=4, options=FAST))
    stats = summary.step("caption")
    assert (stats.computed, stats.failed) == (11, 1)
    [error] = summary.errors
    assert error["reason"] == "openai:test-vlm: HTTP 400: Invalid image" and error["source"].endswith(
        "01.jpg"
    )
    assert "cat/01" not in props and len(props) == 11  # a failed item is not part of the dataset
    counts = {name: len(server.hits_for(f"Describe {name}.")) for name in props}
    assert counts.pop("dog/00") == 3 and counts.pop("cat/00") == 3
    assert set(counts.values()) == {1}  # the batch-mates of the failure were asked once, not again
    assert len(server.hits_for("Describe cat/01.")) == 1
    assert stats.usage["requests"] == 12

    summary, _ = run(ws_path, photos, caption(server, batch_size=4, options=FAST))
    assert len(server.hits_for("Describe cat/01.")) == 2  # failures are retried next run, alone
    assert summary.step("caption").computed == 1 and summary.step("caption").cached == 11


def test_truncated_captions_are_flagged_or_fail(photos, ws_path, server):
    _, props = run(ws_path, photos, caption(server, max_tokens=3))
    assert all(p["caption"].startswith("a 128x") and len(p["caption"].split()) == 3 for p in props.values())
    assert all(p["caption_truncated"] is True for p in props.values())
    with pytest.raises(Exception, match="stopped"):
        run(ws_path, photos, caption(server, max_tokens=4, on_truncated="fail"), max_errors=0)
    summary, _ = run(ws_path, photos, caption(server, max_tokens=4, on_truncated="fail"))
    assert summary.step("caption").failed == 12
    assert "text cut off at max_tokens=4 (finish reason 'length')" in summary.errors[0]["reason"]
    _, props = run(ws_path, photos, caption(server, max_tokens=500))
    assert all(p["caption_truncated"] is False for p in props.values())


def test_several_captions_and_preamble_stripping(photos, ws_path):
    with FakeOpenAI(prefix="The image shows ") as server:
        _, props = run(ws_path, photos, caption(server, n=2, seed=3, strip_preamble=True, target="captions"))
    pair = props["dog/00"]["captions"]
    assert isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]
    assert all(text.startswith("A 128x") for text in pair)
    assert props["dog/00"]["caption"] == "a photo of sks dog"  # the sidecar caption is untouched
    assert server.hits[0].body["n"] == 2 and server.hits[0].body["seed"] == 3


def test_prompt_template_reads_properties(photos, ws_path, server):
    summary, props = run(ws_path, photos, caption(server, prompt="Known as: {caption}.", default="unknown"))
    assert props["dog/00"]["caption"].endswith("for: Known as: a photo of sks dog.")
    assert props["teapot/00"]["caption"].endswith("for: Known as: unknown.")
    (photos / "dog" / "00.txt").write_text("a photo of ohwx dog")  # an edited hint recomputes that item
    before = len(server.hits)
    summary, props = run(ws_path, photos, caption(server, prompt="Known as: {caption}.", default="unknown"))
    assert len(server.hits) - before == 1 and summary.step("caption").computed == 1
    summary, _ = run(ws_path, photos, caption(server, prompt="Known as: {caption}."))
    assert summary.step("caption").failed == len(
        [e for e in summary.errors if "no property 'caption'" in e["reason"]]
    )


def test_bad_configuration_fails_before_any_work(tmp_path, server, monkeypatch):
    def parse(params: str):
        text = f"workspace: ws\nsteps:\n  - load: {{path: .}}\n  - caption:\n      {params}\n"
        return parse_pipeline(text, base=tmp_path, file="p.yaml")

    with pytest.raises(ParamError, match=r"p.yaml:4: caption.model: required"):
        parse("{backend: openai}")
    with pytest.raises(ConfigError, match=r"unknown backend 'opnai'; did you mean openai"):
        parse("{backend: opnai, model: m}")
    with pytest.raises(ParamError, match=r"does not take option\(s\) dtype"):
        parse(f"{{backend: openai, model: m, base_url: '{server.url}', dtype: float16}}")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        parse("{backend: openai, model: gpt-4o-mini}")
    with pytest.raises(ParamError, match="invalid prompt template"):
        parse(f"{{backend: openai, model: m, base_url: '{server.url}', prompt: 'oops {{'}}")
    assert server.hits == []


def test_caption_after_a_resize_sees_the_derived_image_and_follows_it(photos, ws_path, server):
    def pipeline(edge: int):
        return Load(photos) >> Resize(max_edge=edge) >> caption(server, max_image_edge=128)

    with Workspace(ws_path) as ws:
        ws.run(pipeline(100), progress=False)
        props = {item.name: item.props for item in ws.items()}
        assert len(server.hits) == 12
        assert all(max(map(int, p["caption"].split()[1].split("x"))) == 100 for p in props.values())
        ws.run(pipeline(100), progress=False)
        assert len(server.hits) == 12
        ws.run(pipeline(400), progress=False)  # new pixels: captions recomputed, sent at 128 px
        props = {item.name: item.props for item in ws.items()}
    assert len(server.hits) == 24
    assert all(max(map(int, p["caption"].split()[1].split("x"))) == 128 for p in props.values())


def test_concurrency_above_the_batch_size_is_used(photos, ws_path):
    with FakeOpenAI(delay=0.3) as server:
        summary, _ = run(ws_path, photos, caption(server, batch_size=2, concurrency=6))
    assert summary.step("caption").computed == 12
    assert server.peak == 6


def test_a_free_slot_takes_the_next_request_without_waiting_for_its_batch(photos, ws_path):
    """One slow answer holds one of the 2 slots; the other slot goes on through the following items
    (requests are sent as soon as their images are ready, across batch boundaries), and never more
    than `concurrency` requests are in flight."""
    with FakeOpenAI(script={"Describe": ["slow:1.0"]}) as server:
        summary, props = run(ws_path, photos, caption(server, batch_size=2, concurrency=2))
        slow = server.hits[0]
        during = [h for h in server.hits[1:] if slow.at < h.at < slow.at + 0.9]
    assert summary.step("caption").computed == 12 and all("caption" in p for p in props.values())
    assert len(during) >= 5  # waiting for the slow one's batch would let only its batch-mate through
    assert server.peak <= 2


def test_requests_whose_images_are_decoded_are_built_where_they_are_sent(photos, ws_path, monkeypatch):
    """The API path builds a request on its event loop once the item's image is prepared (no helper
    thread round trip); one whose image is still decoding waits in a helper thread. One slot and a
    0.1 s answer leave every image after the first few decoded by the time its slot comes."""
    from captionary.steps.vlm.base import GenerativeStep

    built: list[str] = []
    request = GenerativeStep.request

    def spied(self, item):
        built.append(threading.current_thread().name)
        return request(self, item)

    monkeypatch.setattr(GenerativeStep, "request", spied)
    with FakeOpenAI(delay=0.1) as server:
        summary, props = run(ws_path, photos, caption(server, concurrency=1, batch_size=2))
    assert summary.step("caption").computed == 12 and all("caption" in p for p in props.values())
    assert len(built) == 12 and built[6:] == ["captionary-http"] * 6
