"""Pipelines from YAML files: errors name the file, the line and the valid options; paths resolve
against the file's folder; `imports` brings in custom steps; the CLI reports errors before any work."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from captionary import (
    ConfigError,
    FilterBySize,
    Load,
    ParamError,
    Resize,
    Save,
    Take,
    UnknownStepError,
    Workspace,
    load_pipeline,
    parse_pipeline,
)
from captionary.cli import main


def write(folder: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the only line of `path` containing `needle`."""
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(lines) == 1, f"{needle!r} is on lines {lines}"
    return lines[0]


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    return info.value


# --- errors -------------------------------------------------------------------------------------------


def test_unknown_step_names_its_line_and_suggests(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - filter_by_sise: {min_edge: 512}
          - resize: {max_edge: 512}
    """,
    )
    error = config_error(path)
    assert isinstance(error, UnknownStepError)
    assert error.line == line_of(path, "filter_by_sise") == 4
    assert error.file == str(path)
    assert "unknown step 'filter_by_sise'" in str(error)
    assert "did you mean filter_by_size" in str(error)
    assert "valid steps:" in str(error)
    assert str(error).startswith(f"{path}:4: ")


def test_unknown_parameter_names_its_line_and_lists_valid_ones(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load:
              path: photos
              recursve: false
    """,
    )
    error = config_error(path)
    assert isinstance(error, ParamError)
    assert error.line == line_of(path, "recursve") == 5
    assert "unknown parameter 'recursve' for step 'load'" in str(error)
    assert "valid parameters: path, recursive, verify, threads" in str(error)


def test_wrong_type_names_the_line_of_the_value(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - filter_by_size:
              max_edge: 2048
              min_edge: big
    """,
    )
    error = config_error(path)
    assert isinstance(error, ParamError)
    assert error.param == "min_edge"
    assert "filter_by_size.min_edge: expected int, got str 'big'" in str(error)
    assert error.line == line_of(path, "min_edge: big") == 6
    assert str(error).startswith(f"{path}:6: ")


def test_value_refused_by_validate_names_the_line_of_the_value(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - filter_by_size:
              min_edge: 512
              max_edge: 100
    """,
    )
    error = config_error(path)
    assert isinstance(error, ParamError)
    assert "filter_by_size.max_edge: must be >= min_edge (512)" in str(error)
    assert error.line == line_of(path, "max_edge: 100") == 6


def test_missing_folder_for_load_names_the_path_line(tmp_path):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load:
              recursive: true
              path: no_such_folder
          - take: {n: 2}
    """,
    )
    error = config_error(path)
    assert isinstance(error, ParamError)
    assert error.line == line_of(path, "path: no_such_folder") == 5
    assert "load.path: folder not found" in str(error)
    assert str(tmp_path / "no_such_folder") in str(error)  # resolved against the file's folder


def test_missing_required_parameter_names_the_step_line(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - filter_by_score
    """,
    )
    error = config_error(path)
    assert isinstance(error, ParamError)
    assert error.line == line_of(path, "filter_by_score") == 4
    assert "step 'filter_by_score' is missing required parameter 'property'" in str(error)


def test_missing_required_parameter_with_other_parameters_given(tmp_path):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load:
              recursive: false
    """,
    )
    error = config_error(path)
    assert error.line == line_of(path, "- load") == 3
    assert "step 'load' is missing required parameter 'path'" in str(error)


def test_cross_parameter_error_names_the_step_line(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - resize
    """,
    )
    error = config_error(path)
    assert error.line == 4
    assert "resize: give exactly one of max_edge, min_edge or target_area" in str(error)


def test_unknown_top_level_key(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        step:
          - load: {path: photos}
    """,
    )
    error = config_error(path)
    assert error.line == 2
    assert "unknown key 'step' (valid keys: workspace, blobs, imports, image_engine, steps)" in str(error)


def test_missing_steps(tmp_path):
    path = write(
        tmp_path,
        """
        workspace: ws
    """,
    )
    error = config_error(path)
    assert error.line == 1
    assert "missing required key 'steps'" in str(error)


def test_missing_workspace(tmp_path, photos):
    path = write(
        tmp_path,
        """
        steps:
          - load: {path: photos}
    """,
    )
    error = config_error(path)
    assert "missing required key 'workspace'" in str(error)


@pytest.mark.parametrize("steps", ["steps: []", "steps:", "steps: load"])
def test_steps_must_be_a_non_empty_list(tmp_path, steps):
    path = write(tmp_path, f"workspace: ws\n{steps}\n")
    error = config_error(path)
    assert error.line == 2
    assert "`steps` must be a non-empty list of steps" in str(error)


def test_invalid_yaml_gives_the_line(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - take: n: 3
    """,
    )
    error = config_error(path)
    assert error.line == 4
    assert "invalid YAML" in str(error)
    assert str(error).startswith(f"{path}:4: invalid YAML: ")


def test_file_that_is_not_a_mapping(tmp_path):
    path = write(
        tmp_path,
        """
        - load: {path: photos}
    """,
    )
    error = config_error(path)
    assert error.line == 1
    assert "a pipeline file is a mapping" in str(error)


def test_pipeline_must_start_with_a_source(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - filter_by_size: {min_edge: 512}
          - load: {path: photos}
    """,
    )
    error = config_error(path)
    assert "a pipeline starts with a source step (e.g. load); it starts with 'filter_by_size'" in str(error)
    assert error.line == line_of(path, "filter_by_size") == 3


def test_step_with_two_keys_is_refused(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
            take: {n: 3}
    """,
    )
    error = config_error(path)
    assert error.line == 3
    assert "a mapping with one key" in str(error)


def test_parameters_must_be_a_mapping(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - take: 3
    """,
    )
    error = config_error(path)
    assert error.line == 4
    assert "parameters of 'take' must be a mapping" in str(error)


def test_workspace_must_be_a_path(tmp_path, photos):
    path = write(
        tmp_path,
        """
        steps:
          - load: {path: photos}
        workspace: 12
    """,
    )
    error = config_error(path)
    assert error.line == 3
    assert "`workspace` must be a folder path" in str(error)


def test_unreadable_file(tmp_path):
    error = config_error(tmp_path / "absent.yaml")
    assert "cannot read pipeline file" in str(error)
    assert error.file == str(tmp_path / "absent.yaml")


def test_parse_pipeline_without_file_says_line(tmp_path):
    with pytest.raises(UnknownStepError) as info:
        parse_pipeline("workspace: ws\nsteps:\n  - lod: {path: x}\n", base=tmp_path)
    assert str(info.value).startswith("line 3: unknown step 'lod'; did you mean load")
    assert info.value.file is None


# --- what a valid file gives -------------------------------------------------------------------------


def test_valid_file_builds_the_steps(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos, threads: 2}
          - filter_by_size: {min_edge: 512}
          - resize: {max_edge: 256, resample: bicubic}
          - take: {n: 5}
          - save: {path: out, format: kohya, json_sidecar: true}
    """,
    )
    spec = load_pipeline(path)
    steps = list(spec.pipeline)
    assert [type(s) for s in steps] == [Load, FilterBySize, Resize, Take, Save]
    assert steps[0].threads == 2
    assert steps[1].min_edge == 512
    assert (steps[2].max_edge, steps[2].resample) == (256, "bicubic")
    assert steps[3].n == 5
    assert steps[4].json_sidecar is True


def test_relative_paths_resolve_against_the_file_folder(tmp_path, photos, monkeypatch):
    write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - save: {path: exports/out}
    """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_pipeline(Path("..") / "pipeline.yaml")  # even the file's own path is relative
    base = tmp_path.resolve()
    assert spec.workspace == base / "ws"
    load, save = spec.pipeline.steps
    assert load.path == base / "photos"
    assert save.path == base / "exports" / "out"
    assert load.path.is_absolute() and save.path.is_absolute() and spec.workspace.is_absolute()


def test_explicitly_relative_strings_resolve_against_the_file_folder(tmp_path):
    """`model: ./my-model` or `shards: ./shards/{0..1}.tar` mean beside the YAML, not the cwd."""
    shards = tmp_path / "shards"
    shards.mkdir()
    for n in (0, 1):
        (shards / f"{n}.tar").write_bytes(b"")
    spec = parse_pipeline(
        "workspace: w\nsteps:\n  - load_webdataset: {shards: './shards/{0..1}.tar'}\n", base=tmp_path
    )
    assert spec.pipeline.steps[0].shards == str(tmp_path / "shards" / "{0..1}.tar")


def test_parse_pipeline_resolves_against_base(tmp_path, photos):
    spec = parse_pipeline("workspace: w\nsteps:\n  - load: {path: photos}\n", base=tmp_path)
    assert spec.workspace == tmp_path / "w"
    assert spec.pipeline.steps[0].path == tmp_path / "photos"


def test_absolute_paths_are_kept(tmp_path, photos):
    other = tmp_path / "other"
    other.mkdir()
    spec = parse_pipeline(
        f"workspace: {tmp_path / 'abs_ws'}\nsteps:\n  - load: {{path: {photos}}}\n", base=other
    )
    assert spec.workspace == tmp_path / "abs_ws"
    assert spec.pipeline.steps[0].path == photos


def test_bare_step_names_without_params(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - filter_by_size
          - filter_by_size:
    """,
    )
    spec = load_pipeline(path)
    first, second = spec.pipeline.steps[1:]
    assert isinstance(first, FilterBySize) and isinstance(second, FilterBySize)
    assert (first.min_edge, first.max_edge, first.min_area) == (0, None, 0)


def test_imports_register_a_custom_step(tmp_path, photos, monkeypatch):
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "t_yaml_custom_steps.py").write_text(
        textwrap.dedent("""
        from captionary import step


        @step(writes=("t_yaml_flag",), reads_image=False)
        def t_yaml_custom_flag(item, value: str = "on", times: int = 1):
            return {"t_yaml_flag": value * times}
    """)
    )
    monkeypatch.syspath_prepend(str(modules))
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - t_yaml_custom_flag: {value: ab, times: 2}
        imports: [t_yaml_custom_steps]
    """,
    )
    spec = load_pipeline(path)  # imports come first, wherever they are in the file
    custom = spec.pipeline.steps[1]
    assert custom.name == "t_yaml_custom_flag"
    assert (custom.value, custom.times) == ("ab", 2)
    with Workspace(spec.workspace) as ws:
        summary = ws.run(spec.pipeline, progress=False, workers=0)
        assert summary.step("t_yaml_custom_flag").computed == 12
        assert {item["t_yaml_flag"] for item in ws.items()} == {"abab"}


def test_import_that_fails(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        imports:
          - t_yaml_no_such_module_anywhere
        steps:
          - load: {path: photos}
    """,
    )
    error = config_error(path)
    assert error.line == 3
    assert "cannot import 't_yaml_no_such_module_anywhere'" in str(error)


def test_imports_must_be_a_list_of_names(tmp_path, photos):
    path = write(
        tmp_path,
        """
        workspace: ws
        imports: {a: 1}
        steps:
          - load: {path: photos}
    """,
    )
    error = config_error(path)
    assert error.line == 2
    assert "`imports` must be a list of module names" in str(error)


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle", "message"),
    [
        ("  - load: {path: photos}\n  - resise: {max_edge: 5}\n", "resise", "unknown step 'resise'"),
        ("  - load: {path: missing}\n", "missing", "load.path: folder not found"),
        ("  - load:\n      path: photos\n      colour: red\n", "colour", "unknown parameter 'colour'"),
        ("  - take: {n: 1}\n", "take", "a pipeline starts with a source step"),
    ],
)
def test_cli_run_reports_config_errors_before_any_work(tmp_path, photos, capsys, body, needle, message):
    path = write(tmp_path, "workspace: ws\nsteps:\n" + body)
    code = main(["run", str(path), "--no-progress", "--workers", "0"])
    captured = capsys.readouterr()
    assert code == 2
    line = line_of(path, needle)
    assert captured.err.startswith(f"error: {path}:{line}: ")
    assert message in captured.err
    assert captured.out == ""
    assert not (tmp_path / "ws").exists()


def test_cli_run_resolves_paths_against_the_file(tmp_path, photos, capsys, monkeypatch):
    path = write(
        tmp_path,
        """
        workspace: ws
        steps:
          - load: {path: photos}
          - take: {n: 3}
          - save: {path: out}
    """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code = main(["run", str(path), "--no-progress", "--workers", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (tmp_path / "ws" / "captionary.db").is_file()
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.jpg")) == ["00.jpg", "01.jpg", "04.jpg"]
    assert list(elsewhere.iterdir()) == []
    assert "completed" in captured.out
