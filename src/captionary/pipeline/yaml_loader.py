"""Pipelines from YAML, with errors that name the file, the line and the valid options.

workspace: ws                 # relative paths resolve against the YAML file's folder
imports: [my_steps]           # optional: modules that register custom steps (the file's folder is
                              # searched after Python's path); importing them runs their code
steps:
  - load: {path: photos}
  - filter_by_size: {min_edge: 512}
  - resize: {max_edge: 1024}
  - save: {path: out, format: kohya}
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from captionary.core import engines, yaml_limits
from captionary.errors import ConfigError, ParamError
from captionary.pipeline import dataflow_gen
from captionary.pipeline.params import check
from captionary.pipeline.pipeline import Pipeline
from captionary.pipeline.properties import report_property_problems
from captionary.pipeline.registry import STEPS

TOP_LEVEL = ("workspace", "blobs", "imports", "image_engine", "steps")


@dataclass
class PipelineFile:
    """A parsed pipeline file: where its workspace is and the steps to run."""

    workspace: Path
    pipeline: Pipeline
    path: Path | None = None
    blobs: str | None = None  # an fsspec URL for the workspace's blob store (`s3://bucket/prefix`)


def load_pipeline(path: str | Path) -> PipelineFile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline file: {exc.strerror or exc}", file=str(path)) from None
    return parse_pipeline(text, base=path.resolve().parent, file=str(path))


def parse_pipeline(text: str, *, base: Path, file: str | None = None) -> PipelineFile:
    try:
        return _Parser(base, file).parse(text)
    except ConfigError as exc:
        raise exc.at(line=None, file=file) from None


class _Parser:
    def __init__(self, base: Path, file: str | None):
        self.base = base
        self.file = file
        self.constructor = yaml.SafeLoader("")
        self.image_engine: str | None = None

    def parse(self, text: str) -> PipelineFile:
        root = yaml_limits.compose(text)  # within limits: depth, alias expansion
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError("a pipeline file is a mapping with `workspace:` and `steps:`", line=1)
        if dataflow_gen.is_dataflow_gen(root):  # Dataflow-Gen's layout, read as it is
            workspace, pipeline = dataflow_gen.convert(root, self.base)
            return PipelineFile(workspace, pipeline)
        top = {}
        for key_node, value_node in root.value:
            key = key_node.value
            if key not in TOP_LEVEL:
                raise ConfigError(
                    f"unknown key {key!r} (valid keys: {', '.join(TOP_LEVEL)})", line=_line(key_node)
                )
            top[key] = (key_node, value_node)
        for key in ("workspace", "steps"):
            if key not in top:
                raise ConfigError(f"missing required key {key!r}", line=1)
        if str(self.base) not in sys.path:  # a module beside the file is found, after installed ones
            sys.path.append(str(self.base))
        if "imports" in top:
            self._imports(top["imports"][1])
        workspace_node = top["workspace"][1]
        workspace = self._value(workspace_node)
        if not isinstance(workspace, str) or not workspace:
            raise ConfigError("`workspace` must be a folder path", line=_line(workspace_node))
        if "image_engine" in top:  # the `engine` of every step that has one and leaves it out
            engine_node = top["image_engine"][1]
            self.image_engine = self._value(engine_node)
            if self.image_engine not in ("auto", "pillow", "vips"):
                raise ConfigError(
                    f"`image_engine` must be auto, pillow or vips; got {self.image_engine!r}",
                    line=_line(engine_node),
                )
        steps_node = top["steps"][1]
        if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
            raise ConfigError("`steps` must be a non-empty list of steps", line=_line(steps_node))
        pipeline = Pipeline([self._step(node) for node in steps_node.value])
        for position, node in enumerate(steps_node.value):
            try:  # the structural checks of Pipeline.check, each located at its step's line
                prefix = Pipeline(list(pipeline)[: position + 1])
                prefix.properties_checked = True
                prefix.check()
            except ConfigError as exc:
                raise exc.at(line=_line(node)) from None
        report_property_problems(list(pipeline), [_line(node) for node in steps_node.value], self.file)
        pipeline.properties_checked = True
        blobs = None
        if "blobs" in top:
            blobs = self._value(top["blobs"][1])
            if not isinstance(blobs, str) or "://" not in blobs:
                raise ConfigError(
                    "`blobs` must be an fsspec URL such as s3://bucket/prefix", line=_line(top["blobs"][1])
                )
        return PipelineFile(self._path(workspace), pipeline, blobs=blobs)

    def _imports(self, node: yaml.Node) -> None:
        modules = self._value(node)
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            raise ConfigError("`imports` must be a list of module names", line=_line(node))
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(f"cannot import {module!r}: {exc}", line=_line(node)) from None

    def _step(self, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            name_node, params_node = node, None
        elif isinstance(node, yaml.MappingNode) and len(node.value) == 1:
            name_node, params_node = node.value[0]
        else:
            raise ConfigError(
                "each step is `- name: {param: value, ...}` (a mapping with one key) or a bare name",
                line=_line(node),
            )
        line = _line(name_node)
        try:
            cls = STEPS.get(str(name_node.value))
        except ConfigError as exc:
            raise exc.at(line=line) from None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        param_lines: dict[str, int] = {}
        if params_node is not None and not (
            isinstance(params_node, yaml.ScalarNode) and self._value(params_node) is None
        ):
            if not isinstance(params_node, yaml.MappingNode):
                raise ConfigError(
                    f"parameters of {cls.name!r} must be a mapping, e.g. `{cls.name}: {{param: value}}`",
                    line=_line(params_node),
                )
            for key_node, value_node in params_node.value:
                key = str(key_node.value)
                if key not in fields:
                    valid = ", ".join(fields) or "none"
                    raise ParamError(
                        f"unknown parameter {key!r} for step {cls.name!r} (valid parameters: {valid})",
                        line=_line(key_node),
                    )
                try:
                    value = check(self._value(value_node), hints[key], f"{cls.name}.{key}", param=key)
                except ParamError as exc:
                    raise exc.at(line=_line(value_node)) from None
                if isinstance(value, Path):
                    value = self._path(value)
                elif isinstance(value, list) and value and all(isinstance(v, Path) for v in value):
                    value = [self._path(v) for v in value]
                elif isinstance(value, str) and value.startswith(("./", "../")):
                    value = str(self._path(value))  # an explicitly relative model folder, shard pattern, ...
                kwargs[key] = value
                param_lines[key] = _line(value_node)
        if self.image_engine is not None and engines.has_engine_parameter(cls) and "engine" not in kwargs:
            kwargs["engine"] = self.image_engine
        missing = [
            name
            for name, f in fields.items()
            if name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ParamError(
                f"step {cls.name!r} is missing required parameter {', '.join(map(repr, missing))}",
                line=line,
            )
        try:
            return cls(**kwargs)
        except ParamError as exc:
            raise exc.at(line=param_lines.get(exc.param or "", line)) from None
        except ConfigError as exc:
            raise exc.at(line=line) from None

    def _value(self, node: yaml.Node) -> Any:
        return yaml_limits.construct(node, self.constructor)

    def _path(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1
