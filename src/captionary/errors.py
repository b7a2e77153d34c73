"""The exception tree. Every error captionary raises on purpose derives from `CaptionaryError`.

CaptionaryError
├── ConfigError              a pipeline or step is wrong; raised before any work starts
│   ├── UnknownStepError     a step name that is not registered (lists close matches)
│   └── ParamError           a missing, unknown or mistyped step parameter
├── RegistryError            a step registered twice under one name
├── WorkspaceError           the workspace folder or database is unusable
├── ItemError                one item failed in one step; recorded, the run goes on
└── RunAborted               the run stopped: too many errors, or interrupted

PipelineWarning (a UserWarning): a pipeline that may be wrong, reported before the run
"""

from __future__ import annotations


class CaptionaryError(Exception):
    """Base class of every error captionary raises on purpose."""


class ConfigError(CaptionaryError):
    """A pipeline definition is invalid. `line` is the YAML line (1-based) when known."""

    def __init__(self, message: str, *, line: int | None = None, file: str | None = None):
        self.message = message
        self.line = line
        self.file = file
        where = ""
        if file and line:
            where = f"{file}:{line}: "
        elif line:
            where = f"line {line}: "
        elif file:
            where = f"{file}: "
        super().__init__(where + message)

    def at(self, *, line: int | None, file: str | None = None) -> ConfigError:
        """The same error, located in a file and line (keeps a location already set)."""
        return type(self)(self.message, line=self.line or line, file=self.file or file)


class UnknownStepError(ConfigError):
    """A step name that is not in the registry."""


class ParamError(ConfigError):
    """A step parameter that is missing, unknown, or of the wrong type. `param` names it when known."""

    def __init__(
        self, message: str, *, line: int | None = None, file: str | None = None, param: str | None = None
    ):
        super().__init__(message, line=line, file=file)
        self.param = param

    def at(self, *, line: int | None, file: str | None = None) -> ParamError:
        return ParamError(self.message, line=self.line or line, file=self.file or file, param=self.param)


class RegistryError(CaptionaryError):
    """A second step registered under a name already taken."""


class WorkspaceError(CaptionaryError):
    """The workspace folder or its database cannot be used."""


class ItemError(CaptionaryError):
    """One item failed in one step. Steps may raise it with a clear reason."""


class RunAborted(CaptionaryError):
    """A run stopped before its end (too many errors, or Ctrl-C). Committed work is kept."""


def describe_error(exc: BaseException) -> str:
    """One line for an item's error record: an ItemError's own message, else `Type: message`."""
    if isinstance(exc, ItemError):
        return str(exc)
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


class PipelineWarning(UserWarning):
    """Something in a pipeline looks wrong but may be right (e.g. a filter names a property no earlier
    step writes, which the source's sidecars or columns may still provide); the run goes on."""
