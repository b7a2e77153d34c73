"""The step registry: builtins are registered, names are unique, misses come with suggestions."""

from __future__ import annotations

from typing import ClassVar

import pytest

from captionary import (
    STEPS,
    ConfigError,
    Filter,
    FilterBySize,
    Load,
    RegistryError,
    Resize,
    Save,
    Take,
    UnknownStepError,
)
from captionary.pipeline.registry import Registry

BUILTINS = {
    "load": (Load, "source"),
    "filter_by_size": (FilterBySize, "filter"),
    "resize": (Resize, "map"),
    "save": (Save, "sink"),
    "take": (Take, "global"),
}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_is_registered(name):
    cls, kind = BUILTINS[name]
    assert name in STEPS
    assert STEPS.get(name) is cls
    assert cls.kind == kind


def test_iteration_is_sorted_by_name_and_includes_builtins():
    listed = list(STEPS)
    names = [name for name, _ in listed]
    assert names == sorted(names)
    assert set(BUILTINS) <= set(names)
    assert dict(listed)["resize"] is Resize


def test_same_name_from_another_class_is_refused_at_class_creation():
    with pytest.raises(RegistryError) as info:

        class Impostor(Filter):
            name: ClassVar[str] = "filter_by_size"

            def drop_reason(self, item):
                return None

    message = str(info.value)
    assert "'filter_by_size'" in message
    assert "captionary.steps.filters.size.FilterBySize" in message
    assert "Impostor" in message
    # the original keeps its name
    assert STEPS.get("filter_by_size") is FilterBySize


def test_registry_error_is_not_a_config_error():
    with pytest.raises(RegistryError) as info:

        class AnotherLoad(Filter):
            name: ClassVar[str] = "load"

    assert not isinstance(info.value, ConfigError)
    assert STEPS.get("load") is Load


def test_subclass_without_its_own_name_is_not_registered():
    class Stricter(FilterBySize):  # inherits name "filter_by_size" but does not set it
        pass

    assert STEPS.get("filter_by_size") is FilterBySize
    assert Stricter.name == "filter_by_size"


def test_subclass_with_a_new_name_is_registered():
    class TRegistryPassAll(Filter):
        name: ClassVar[str] = "t_registry_pass_all"

        def drop_reason(self, item):
            return None

    assert STEPS.get("t_registry_pass_all") is TRegistryPassAll


def test_misspelled_name_suggests_and_lists_valid_steps():
    with pytest.raises(UnknownStepError) as info:
        STEPS.get("filter_by_sise")
    message = str(info.value)
    assert message.startswith("unknown step 'filter_by_sise'")
    assert "did you mean filter_by_size" in message
    assert "valid steps:" in message
    for name in BUILTINS:
        assert name in message.split("valid steps:", 1)[1]


def test_unknown_step_error_is_a_config_error():
    with pytest.raises(ConfigError):
        STEPS.get("resise")


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(UnknownStepError) as info:
        STEPS.get("qqqqqqqqqqqq")
    assert "did you mean" not in str(info.value)
    assert "valid steps:" in str(info.value)


# --- a private registry: the rules without touching the global one -------------------------------


def _fake(name: str, module: str, qualname: str) -> type:
    cls = type(qualname.rsplit(".", 1)[-1], (), {"name": name})
    cls.__module__ = module
    cls.__qualname__ = qualname
    return cls


def test_private_registry_refuses_a_second_class_for_a_name():
    registry = Registry()
    first = _fake("blur", "pkg.a", "Blur")
    registry.add(first)
    with pytest.raises(RegistryError, match=r"'blur' is taken by pkg\.a\.Blur; cannot register pkg\.b\.Blur"):
        registry.add(_fake("blur", "pkg.b", "Blur"))
    assert registry.get("blur") is first


def test_private_registry_accepts_the_same_class_again_and_a_redefinition():
    registry = Registry()
    first = _fake("blur", "pkg.a", "Blur")
    assert registry.add(first) is first
    assert registry.add(first) is first
    reloaded = _fake("blur", "pkg.a", "Blur")  # the same module reloaded: same origin, new class
    registry.add(reloaded)
    assert registry.get("blur") is reloaded


def test_private_registry_lists_only_its_own_steps():
    registry = Registry()
    registry.add(_fake("sharpen", "pkg", "Sharpen"))
    with pytest.raises(UnknownStepError) as info:
        registry.get("sharpem")
    assert str(info.value) == "unknown step 'sharpem'; did you mean sharpen? (valid steps: sharpen)"


def test_a_parameter_may_not_hide_a_step_attribute():
    from captionary import Map

    with pytest.raises(TypeError, match=r"\['cache_prefix'\] would hide Step attributes"):

        class TRegistryClash(Map):
            cache_prefix: str = "x"
