"""`compose_caption` and `caption_variations`: text-only LLM steps whose cache follows their inputs."""

from __future__ import annotations

import pytest
from openai_server import FakeOpenAI

from captionary import AddTags, CaptionVariations, ComposeCaption, Load, Resize, SetCaption, Workspace

FAST = {"retry_backoff": 0.01}


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


def llm(server: FakeOpenAI) -> dict:
    return {"backend": "openai", "model": "test-llm", "base_url": server.url}


def run(ws_path, pipeline):
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False)
        return summary, {item.name: item.props for item in ws.items()}


def test_compose_caption_combines_properties_without_sending_the_image(photos, ws_path, server):
    def pipeline(tags: list[str], edge: int = 512):
        return (
            Load(photos)
            >> Resize(max_edge=edge)
            >> SetCaption(template="a photo of {name}")
            >> AddTags(tags=tags)
            >> ComposeCaption(**llm(server), prompt="Merge. Caption: {caption}. Tags: {tags}.")
        )

    summary, props = run(ws_path, pipeline(["dog", "outdoors"]))
    assert summary.step("compose_caption").computed == 12
    assert (
        props["dog/00"]["caption"] == "no image for: Merge. Caption: a photo of dog/00. Tags: dog, outdoors."
    )
    assert all("image_url" not in str(h.body["messages"]) for h in server.hits)
    assert summary.step("compose_caption").usage["requests"] == 12

    summary, _ = run(ws_path, pipeline(["dog", "outdoors"], edge=256))  # new pixels, same text inputs
    assert len(server.hits) == 12 and summary.step("compose_caption").cached == 12
    summary, props = run(ws_path, pipeline(["dog", "grass"]))  # a changed input recomputes
    assert len(server.hits) == 24 and props["teapot/01"]["caption"].endswith("Tags: dog, grass.")


def test_compose_caption_default_prompt_names_caption_and_tags(photos, ws_path, server):
    step = ComposeCaption(**llm(server))
    assert step.reads == ("caption", "tags")
    summary, _ = run(ws_path, Load(photos) >> step)
    assert summary.step("compose_caption").failed == 12  # no tags on these photos: said per item
    missing = sorted(e["reason"].split("no property ")[1] for e in summary.errors)
    assert missing == ["'caption'"] * 9 + ["'tags'"] * 3  # dog/00..02 have a caption sidecar
    assert server.hits == []


def test_caption_variations_writes_n_rewordings(photos, ws_path, server):
    step = CaptionVariations(**llm(server), n=3, options=FAST)
    assert step.target == "caption_variations" and step.reads == ("caption",)
    summary, props = run(ws_path, Load(photos) >> SetCaption(template="a photo of {name}") >> step)
    variations = props["cat/00"]["caption_variations"]
    assert len(variations) == 3 and len(set(variations)) == 3
    assert all("Caption: a photo of cat/00" in v for v in variations)
    assert props["cat/00"]["caption"] == "a photo of cat/00"  # the source is kept
    body = server.hits[0].body
    assert body["n"] == 3 and body["temperature"] == 0.8
    assert summary.step("caption_variations").usage["completion_tokens"] == sum(
        len(v.split()) for p in props.values() for v in p["caption_variations"]
    )


def test_caption_variations_one_text_is_still_a_list_and_a_missing_source_fails(photos, ws_path, server):
    one = CaptionVariations(**llm(server), n=1, target="alt", prompt="Longer: {source}")
    _, props = run(ws_path, Load(photos) >> SetCaption(template="{name}") >> one)
    assert props["duck_toy/01"]["alt"] == ["no image for: Longer: duck_toy/01"]
    other = CaptionVariations(**llm(server), source="short")
    assert other.reads == ("short",)
    summary, _ = run(ws_path, Load(photos) >> other)
    assert summary.step("caption_variations").failed == 12
    assert "no property 'short' to reword" in summary.errors[0]["reason"]


def test_prompt_items_go_through_llm_text_steps(tmp_path, ws_path, server):
    """Items without pixels (load_prompts) are text: an LLM step rewrites their prompt, no image sent."""
    from captionary import LoadPrompts

    (tmp_path / "prompts.txt").write_text("a dog on a beach\n")
    pipeline = (
        LoadPrompts(tmp_path / "prompts.txt", n=2)
        >> SetCaption(template="{prompt}")
        >> ComposeCaption(**llm(server), prompt="Improve: {caption} (seed {seed})")
    )
    summary, props = run(ws_path, pipeline)
    assert summary.step("compose_caption").computed == 2 and not summary.errors
    seed = props["prompts_00001_0"]["seed"]
    assert props["prompts_00001_0"]["caption"] == f"no image for: Improve: a dog on a beach (seed {seed})"
    assert all("image_url" not in str(h.body["messages"]) for h in server.hits)
