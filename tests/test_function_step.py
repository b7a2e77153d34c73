"""`@captionary.step`: plain functions as map, filter and batch steps, run in real pipelines."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections import Counter

import pytest

from captionary import (
    STEPS,
    BatchStep,
    ConfigError,
    Filter,
    Load,
    Map,
    ParamError,
    Workspace,
    step,
)

# Step names are global: every function step here is defined once, at module level, with a t_fs_ name.


@step(writes=("caption",), reads=("caption",), reads_image=False)
def t_fs_add_trigger(item, word: str = "sks"):
    """Prefix the caption with a trigger word."""
    return {"caption": f"{word}, {item.get('caption', 'photo')}"}


@step(kind="filter", reads_image=False)
def t_fs_keep_animal(item, animal: str = "dog"):
    if item.name.startswith(animal + "/"):
        return True
    if item.name.startswith("teapot/"):
        return False
    return f"not a {animal}: {item.name}"


@step(kind="batch", writes=("t_fs_batch_len", "t_fs_got_list"), reads_image=False)
def t_fs_batch_len(items, batch_size: int = 5):
    return [{"t_fs_batch_len": len(items), "t_fs_got_list": isinstance(items, list)} for _ in items]


@step(writes=("t_fs_declared",), reads_image=False)
def t_fs_sneaky(item):
    if item.name.startswith("cat/"):
        return {"t_fs_declared": 1, "t_fs_undeclared": 2}
    return {"t_fs_declared": 1}


@step(writes=("t_fs_n",), reads_image=False)
def t_fs_typed(item, n: int = 1, scale: float = 1.0, tags: list[str] = ["a"]):  # noqa: B006
    return {"t_fs_n": n}


@step(writes=("t_fs_v",), reads_image=False)
def t_fs_version_a(item):
    return {"t_fs_v": 1}


@step(writes=("t_fs_v",), reads_image=False)
def t_fs_version_b(item):
    return {"t_fs_v": 2}


@step(writes=("t_fs_v",), reads_image=False, version=7)
def t_fs_pinned_version(item):
    return {"t_fs_v": 3}


@step(name="t_fs_renamed_step", writes=("t_fs_v",), reads_image=False)
def t_fs_function_name(item):
    return {"t_fs_v": 4}


def run(ws_path, pipeline):
    with Workspace(ws_path) as ws:
        summary = ws.run(pipeline, progress=False, workers=0)
        items = {item.name: item for item in ws.items(include_dropped=True)}
        last = ws.last_run()
    return summary, items, last


# --- what the decorator builds ------------------------------------------------------------------------


def test_decorator_builds_a_registered_step_class():
    assert issubclass(t_fs_add_trigger, Map)
    assert issubclass(t_fs_keep_animal, Filter)
    assert issubclass(t_fs_batch_len, BatchStep)
    assert (t_fs_add_trigger.kind, t_fs_keep_animal.kind, t_fs_batch_len.kind) == ("map", "filter", "batch")
    assert STEPS.get("t_fs_add_trigger") is t_fs_add_trigger
    assert t_fs_add_trigger.writes == ("caption",)
    assert t_fs_add_trigger.reads == ("caption",)
    assert t_fs_add_trigger.reads_image is False
    assert t_fs_add_trigger.summary() == "Prefix the caption with a trigger word."
    assert t_fs_add_trigger.signature() == ["word: str = 'sks'"]


def test_name_argument_overrides_the_function_name():
    assert STEPS.get("t_fs_renamed_step") is t_fs_function_name
    assert "t_fs_function_name" not in STEPS


def test_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="@step kind must be one of map, filter, batch; got 'global'"):

        @step(kind="global")
        def t_fs_never_registered(items):
            return []

    assert "t_fs_never_registered" not in STEPS


# --- parameters --------------------------------------------------------------------------------------


def test_parameters_are_type_checked():
    with pytest.raises(ParamError) as info:
        t_fs_typed(n="x")
    assert str(info.value) == "t_fs_typed.n: expected int, got str 'x'"
    assert info.value.param == "n"
    with pytest.raises(ParamError, match=r"t_fs_typed\.tags: expected list\[str\]"):
        t_fs_typed(tags=["a", 1])
    with pytest.raises(ParamError, match=r"t_fs_add_trigger\.word: expected str, got int 3"):
        t_fs_add_trigger(word=3)


def test_parameters_are_converted_and_defaults_are_used():
    built = t_fs_typed(scale=2)
    assert built.params == {"n": 1, "scale": 2.0, "tags": ["a"]}
    assert type(built.scale) is float


def test_list_defaults_are_not_shared_between_steps():
    first, second = t_fs_typed(), t_fs_typed()
    first.tags.append("b")
    assert second.tags == ["a"]


# --- running -----------------------------------------------------------------------------------------


def test_map_writes_its_declared_properties(photos, ws_path):
    summary, items, _ = run(ws_path, Load(photos) >> t_fs_add_trigger(word="ohwx"))
    assert summary.status == "completed"
    stats = summary.step("t_fs_add_trigger")
    assert (stats.n_in, stats.n_out, stats.computed, stats.failed) == (12, 12, 12, 0)
    assert items["dog/00"]["caption"] == "ohwx, a photo of sks dog"
    assert items["cat/00"]["caption"] == "ohwx, photo"
    assert summary.errors == []


def test_map_parameters_are_part_of_the_cache_key(photos, ws_path):
    run(ws_path, Load(photos) >> t_fs_add_trigger(word="ohwx"))
    again, _, _ = run(ws_path, Load(photos) >> t_fs_add_trigger(word="ohwx"))
    assert again.step("t_fs_add_trigger").cached == 12
    other, items, _ = run(ws_path, Load(photos) >> t_fs_add_trigger(word="zzz"))
    assert other.step("t_fs_add_trigger").computed == 12
    assert items["dog/00"]["caption"] == "zzz, a photo of sks dog"


def test_filter_keeps_true_and_drops_false_or_reason(photos, ws_path):
    summary, items, _ = run(ws_path, Load(photos) >> t_fs_keep_animal(animal="dog"))
    stats = summary.step("t_fs_keep_animal")
    assert (stats.n_in, stats.n_out, stats.dropped) == (12, 5, 7)
    kept = sorted(name for name, item in items.items() if "dropped_by" not in item)
    assert kept == ["dog/00", "dog/01", "dog/02", "dog/03", "dog/04"]

    teapot = items["teapot/00"]
    assert teapot["dropped_by"] == "t_fs_keep_animal"
    assert teapot["drop_reason"] == "rejected by t_fs_keep_animal"  # returned False

    cat = items["cat/04"]
    assert cat["dropped_by"] == "t_fs_keep_animal"
    assert cat["drop_reason"] == "not a dog: cat/04"  # returned a string
    assert items["duck_toy/01"]["drop_reason"] == "not a dog: duck_toy/01"


def test_dropped_items_are_hidden_by_default(photos, ws_path):
    run(ws_path, Load(photos) >> t_fs_keep_animal(animal="cat"))
    with Workspace(ws_path) as ws:
        assert sorted(item.name for item in ws.items()) == ["cat/00", "cat/01", "cat/04"]
        assert len(ws) == 3


def test_batch_receives_a_list_of_items(photos, ws_path):
    summary, items, _ = run(ws_path, Load(photos) >> t_fs_batch_len(batch_size=5))
    assert summary.step("t_fs_batch_len").computed == 12
    assert all(item["t_fs_got_list"] is True for item in items.values())
    sizes = [item["t_fs_batch_len"] for item in items.values()]
    assert all(1 <= size <= 5 for size in sizes)
    assert max(sizes) > 1  # several items in one call
    # each item reports its own batch's size, so k items report k for each batch of k
    assert all(count % size == 0 for size, count in Counter(sizes).items())


def test_batch_size_does_not_change_the_cache_key(photos, ws_path):
    run(ws_path, Load(photos) >> t_fs_batch_len(batch_size=5))
    again, _, _ = run(ws_path, Load(photos) >> t_fs_batch_len(batch_size=3))
    assert again.step("t_fs_batch_len").cached == 12
    assert again.step("t_fs_batch_len").computed == 0


def test_undeclared_property_fails_the_item(photos, ws_path):
    summary, items, last = run(ws_path, Load(photos) >> t_fs_sneaky())
    stats = summary.step("t_fs_sneaky")
    assert (stats.n_in, stats.failed, stats.n_out) == (12, 3, 9)

    assert len(summary.errors) == 3
    assert {os.path.relpath(e["source"], photos) for e in summary.errors} == {
        os.path.join("cat", n) for n in ("00.jpg", "01.jpg", "04.jpg")
    }
    for error in summary.errors:
        assert error["step"] == "t_fs_sneaky"
        assert "not declared" in error["reason"]
        assert "'t_fs_undeclared'" in error["reason"]
    assert last["errors"] == summary.errors

    assert items["dog/00"]["t_fs_declared"] == 1
    assert not any(name.startswith("cat/") for name in items)  # failed items do not flow on


# --- version -------------------------------------------------------------------------------------------


def test_version_is_a_hash_of_the_source():
    assert isinstance(t_fs_version_a.version, str)
    assert len(t_fs_version_a.version) == 12
    assert t_fs_version_a.version != t_fs_version_b.version
    assert t_fs_version_a().cache_prefix != t_fs_version_b().cache_prefix


def test_explicit_version_is_kept():
    assert t_fs_pinned_version.version == 7


MODULE_V1 = """
from captionary import step


@step(writes=("t_fs_reload_value",), reads_image=False)
def t_fs_reloaded(item):
    return {"t_fs_reload_value": 1}
"""


def test_editing_the_function_changes_its_version_and_recomputes(tmp_path, photos, ws_path, monkeypatch):
    module_file = tmp_path / "t_fs_reload_mod.py"
    module_file.write_text(textwrap.dedent(MODULE_V1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    try:
        module = importlib.import_module("t_fs_reload_mod")
        first_version = module.t_fs_reloaded.version
        summary, _, _ = run(ws_path, Load(photos) >> module.t_fs_reloaded())
        assert summary.step("t_fs_reloaded").computed == 12
        summary, _, _ = run(ws_path, Load(photos) >> module.t_fs_reloaded())
        assert summary.step("t_fs_reloaded").cached == 12

        edited = textwrap.dedent(MODULE_V1).replace('value": 1}', 'value": 100}')
        assert edited != textwrap.dedent(MODULE_V1)
        module_file.write_text(edited)
        stat = module_file.stat()
        os.utime(module_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        module = importlib.reload(module)  # same module and name: the step is redefined, not a clash
        assert STEPS.get("t_fs_reloaded") is module.t_fs_reloaded
        assert module.t_fs_reloaded.version != first_version

        summary, items, _ = run(ws_path, Load(photos) >> module.t_fs_reloaded())
        assert summary.step("t_fs_reloaded").computed == 12
        assert {item["t_fs_reload_value"] for item in items.values()} == {100}
    finally:
        sys.modules.pop("t_fs_reload_mod", None)
