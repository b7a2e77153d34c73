"""YAML read safely and within limits: plain data only (`yaml.SafeLoader`), nesting at most
`MAX_DEPTH` deep, and aliases expanding to at most `MAX_VALUES` values (an alias bomb, a few lines
that expand to billions of values, is refused before it costs seconds or gigabytes). Every refusal is
a ConfigError with the line it concerns.
"""

from __future__ import annotations

from typing import Any

from captionary.errors import ConfigError

MAX_DEPTH = 64
"""Nesting levels (a pipeline needs a handful); PyYAML's recursive composer fails near 300."""
MAX_VALUES = 100_000
"""Values (scalars, lists, mappings) a document may expand to through its aliases."""


def compose(text: str) -> Any:
    """The document's node graph (`yaml.compose`), checked: depth first, on the tokens (the composer
    itself recurses), then the size the aliases expand to and the depth through them."""
    import yaml

    try:
        _check_nesting(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _invalid(exc) from None
    if root is not None:
        _check_expansion(root)
    return root


def construct(node: Any, constructor: Any) -> Any:
    """The Python value of a composed node; a tag that is not plain data (`!!python/object`) is a
    ConfigError at its line."""
    import yaml

    try:
        return constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise _invalid(exc, node) from None


def safe_load(text: str) -> Any:
    """`yaml.safe_load` within the limits above."""
    import yaml

    root = compose(text)
    return None if root is None else construct(root, yaml.SafeLoader(""))


def _invalid(exc: Exception, node: Any = None) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(node, "start_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if "constructor for the tag" in problem:
        problem += " (a pipeline file holds plain data only: no !!python tags)"
    return ConfigError(f"invalid YAML: {problem}", line=mark.line + 1 if mark else None)


def _check_nesting(text: str) -> None:
    import yaml

    opening = (
        yaml.BlockMappingStartToken,
        yaml.BlockSequenceStartToken,
        yaml.FlowMappingStartToken,
        yaml.FlowSequenceStartToken,
    )
    closing = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    depth = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, opening):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(_too_deep(), line=token.start_mark.line + 1)
        elif isinstance(token, closing):
            depth -= 1


def _too_deep() -> str:
    return f"YAML nested more than {MAX_DEPTH} levels deep"


def _check_expansion(root: Any) -> None:
    """Each node's expanded size and depth, computed once per node (aliases share nodes), without
    recursion; refused at the first node over a limit, or at an alias that refers to itself."""
    import yaml

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack[-1]
        if id(node) in size:
            stack.pop()
            continue
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        pending = [child for child in children if id(child) not in size]
        if pending and id(node) not in open_nodes:
            open_nodes.add(id(node))
            for child in pending:
                if id(child) in open_nodes:
                    raise ConfigError("a YAML alias refers to itself", line=child.start_mark.line + 1)
            stack.extend(pending)
            continue
        if pending:  # reached again while a child is still open: only a cycle does that
            raise ConfigError("a YAML alias refers to itself", line=node.start_mark.line + 1)
        stack.pop()
        open_nodes.discard(id(node))
        size[id(node)] = 1 + sum(size[id(child)] for child in children)
        depth[id(node)] = 1 + max((depth[id(child)] for child in children), default=0)
        line = node.start_mark.line + 1
        if size[id(node)] > MAX_VALUES:
            message = f"YAML aliases expand to more than {MAX_VALUES} values here (an alias bomb?)"
            raise ConfigError(message, line=line)
        if depth[id(node)] > MAX_DEPTH:
            raise ConfigError(_too_deep() + " (through aliases)", line=line)
