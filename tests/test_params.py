"""Parameter checking: `check` against type hints, and steps refusing bad parameters when built."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import pytest

from captionary import ConfigError, FilterBySize, Load, ParamError, Resize, Save, Take
from captionary.pipeline.params import check, type_name

# --- accepted values and conversions ---------------------------------------------------------------


def test_int_accepts_int():
    assert check(3, int, "s.p") == 3


@pytest.mark.parametrize("value", [True, False, 3.0, "3", None])
def test_int_refuses_bool_float_str_none(value):
    with pytest.raises(ParamError, match=r"s\.p: expected int"):
        check(value, int, "s.p")


def test_bool_is_not_accepted_as_int_and_message_says_bool():
    with pytest.raises(ParamError) as info:
        check(True, int, "take.n", param="n")
    assert str(info.value) == "take.n: expected int, got bool True"


def test_float_coerces_int():
    value = check(2, float, "s.p")
    assert value == 2.0
    assert type(value) is float


def test_float_keeps_float_and_refuses_bool_and_str():
    assert check(0.5, float, "s.p") == 0.5
    with pytest.raises(ParamError, match="expected float, got bool False"):
        check(False, float, "s.p")
    with pytest.raises(ParamError, match=r"expected float, got str '0\.5'"):
        check("0.5", float, "s.p")


def test_bool_accepts_only_bool():
    assert check(False, bool, "s.p") is False
    with pytest.raises(ParamError, match="expected bool, got int 1"):
        check(1, bool, "s.p")
    with pytest.raises(ParamError, match="expected bool, got str 'yes'"):
        check("yes", bool, "s.p")


def test_str_accepts_str_refuses_int():
    assert check("x", str, "s.p") == "x"
    with pytest.raises(ParamError, match="expected str, got int 5"):
        check(5, str, "s.p")


def test_path_from_str_and_path():
    converted = check("some/dir", Path, "s.p")
    assert isinstance(converted, Path)
    assert converted == Path("some/dir")
    assert check(Path("/abs"), Path, "s.p") == Path("/abs")


@pytest.mark.parametrize("value", ["", 7, None])
def test_path_refuses_empty_string_and_non_strings(value):
    with pytest.raises(ParamError, match="expected Path"):
        check(value, Path, "s.p")


def test_literal_accepts_listed_value():
    assert check("b", Literal["a", "b"], "s.p") == "b"


def test_literal_refuses_other_value_and_lists_choices():
    with pytest.raises(ParamError) as info:
        check("c", Literal["a", "b"], "resize.resample", param="resample")
    assert str(info.value) == "resize.resample: expected 'a' | 'b', got str 'c'"
    assert info.value.param == "resample"


def test_literal_compares_types_too():
    assert check(1, Literal[1, 2], "s.p") == 1
    with pytest.raises(ParamError):
        check(True, Literal[1, 2], "s.p")  # True == 1, but it is a bool
    with pytest.raises(ParamError):
        check("1", Literal[1, 2], "s.p")


@pytest.mark.parametrize("hint", [int | None, Optional[int], Union[int, None]])  # noqa: UP007, UP045
def test_optional_accepts_none_and_inner_type(hint):
    assert check(None, hint, "s.p") is None
    assert check(4, hint, "s.p") == 4


def test_optional_refuses_other_types_naming_both():
    with pytest.raises(ParamError) as info:
        check("x", int | None, "filter_by_size.max_edge")
    assert str(info.value) == "filter_by_size.max_edge: expected int | None, got str 'x'"


def test_union_converts_with_first_matching_member():
    value = check(3, float | None, "s.p")
    assert value == 3.0
    assert type(value) is float


def test_list_of_str():
    assert check(["a", "b"], list[str], "s.p") == ["a", "b"]
    converted = check(("a", "b"), list[str], "s.p")
    assert converted == ["a", "b"]
    assert isinstance(converted, list)


@pytest.mark.parametrize("value", [["a", 1], "ab", {"a": 1}, None])
def test_list_of_str_refuses_bad_elements_and_non_lists(value):
    with pytest.raises(ParamError, match=r"expected list\[str\]"):
        check(value, list[str], "s.p")


def test_list_elements_are_converted():
    converted = check([1, 2.5], list[float], "s.p")
    assert converted == [1.0, 2.5]
    assert all(type(v) is float for v in converted)


def test_variadic_tuple_from_list():
    converted = check([1, 2, 3], tuple[int, ...], "s.p")
    assert converted == (1, 2, 3)
    assert isinstance(converted, tuple)
    with pytest.raises(ParamError, match=r"expected tuple\[int, \.\.\.\]"):
        check([1, "2"], tuple[int, ...], "s.p")


def test_fixed_tuple_checks_length_and_each_position():
    assert check([1, "a"], tuple[int, str], "s.p") == (1, "a")
    with pytest.raises(ParamError, match=r"expected tuple\[int, str\]"):
        check([1], tuple[int, str], "s.p")
    with pytest.raises(ParamError):
        check([1, "a", "b"], tuple[int, str], "s.p")
    with pytest.raises(ParamError):
        check(["a", 1], tuple[int, str], "s.p")


def test_dict_checks_keys_and_values():
    assert check({"a": 1}, dict[str, int], "s.p") == {"a": 1}
    converted = check({"a": 1}, dict[str, float], "s.p")
    assert type(converted["a"]) is float
    with pytest.raises(ParamError, match=r"expected dict\[str, int\]"):
        check({"a": "x"}, dict[str, int], "s.p")
    with pytest.raises(ParamError):
        check({1: 1}, dict[str, int], "s.p")
    with pytest.raises(ParamError):
        check([("a", 1)], dict[str, int], "s.p")


def test_any_accepts_everything():
    marker = object()
    assert check(marker, Any, "s.p") is marker


# --- the error itself ----------------------------------------------------------------------------------


def test_error_is_a_config_error_with_param():
    with pytest.raises(ConfigError) as info:
        check("x", int, "save.quality", param="quality")
    assert isinstance(info.value, ParamError)
    assert info.value.param == "quality"
    assert info.value.line is None


def test_error_param_defaults_to_none():
    with pytest.raises(ParamError) as info:
        check("x", int, "save.quality")
    assert info.value.param is None


def test_long_values_are_shortened_in_the_message():
    long = "x" * 200
    with pytest.raises(ParamError) as info:
        check(long, int, "s.p")
    message = str(info.value)
    assert message.startswith("s.p: expected int, got str 'xxx")
    assert message.endswith("...")
    assert len(message) < 120


def test_type_name_spellings():
    assert type_name(int | None) == "int | None"
    assert type_name(Literal["a", "b"]) == "'a' | 'b'"
    assert type_name(list[str]) == "list[str]"
    assert type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert type_name(dict[str, int]) == "dict[str, int]"
    assert type_name(Path) == "Path"


# --- steps check their parameters when built --------------------------------------------------------


def test_step_refuses_wrong_type_naming_step_and_param():
    with pytest.raises(ParamError) as info:
        FilterBySize(min_edge="big")
    assert str(info.value) == "filter_by_size.min_edge: expected int, got str 'big'"
    assert info.value.param == "min_edge"


def test_step_refuses_bool_for_int_param():
    with pytest.raises(ParamError, match=r"take\.n: expected int \| None, got bool True"):
        Take(n=True)


def test_step_refuses_wrong_literal():
    with pytest.raises(ParamError) as info:
        Resize(max_edge=512, resample="cubic")
    assert "resize.resample" in str(info.value)
    assert "'lanczos' | 'bicubic' | 'hamming' | 'bilinear' | 'box' | 'nearest'" in str(info.value)
    assert info.value.param == "resample"


def test_step_validate_runs_after_type_check():
    with pytest.raises(ParamError, match=r"filter_by_size\.min_edge: must be >= 0") as info:
        FilterBySize(min_edge=-1)
    assert info.value.param == "min_edge"


def test_resize_needs_exactly_one_edge():
    with pytest.raises(ParamError, match="resize: give exactly one of max_edge, min_edge or target_area"):
        Resize()
    with pytest.raises(ParamError, match="give exactly one of max_edge, min_edge or target_area"):
        Resize(max_edge=512, min_edge=256)
    assert Resize(max_edge=512).max_edge == 512
    assert Resize(min_edge=256).min_edge == 256


def test_load_missing_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ParamError) as info:
        Load(path=missing)
    assert "load.path: folder not found" in str(info.value)
    assert str(missing) in str(info.value)
    assert info.value.param == "path"


def test_load_converts_str_path(photos):
    step = Load(str(photos))
    assert isinstance(step.path, Path)
    assert step.path == photos


def test_load_refuses_a_file(photos):
    with pytest.raises(ParamError, match="folder not found"):
        Load(path=photos / "dog" / "00.jpg")


def test_save_refuses_float_quality(tmp_path):
    with pytest.raises(ParamError, match=r"save\.quality: expected int, got float 95\.0"):
        Save(path=tmp_path / "out", quality=95.0)


def test_parameters_are_stored_converted(tmp_path):
    step = Save(path=str(tmp_path / "out"))
    assert step.path == tmp_path / "out"
    assert isinstance(step.path, Path)
