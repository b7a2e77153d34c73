"""Optional dependencies: imported when a step is built, failing with the exact install line."""

from __future__ import annotations

import importlib
from types import ModuleType

from captionary.errors import ConfigError


def require(module: str, extra: str, *, package: str | None = None, user: str = "this step") -> ModuleType:
    """Import `module` or raise ConfigError saying `pip install 'captionary[extra]'`.

    Call it in a step's `validate()` so a pipeline that needs a missing library fails before any work,
    and at the start of a command (`user="captionary preview"`).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{user} needs {package or module.split('.')[0]}, which is not installed: "
            f"pip install 'captionary[{extra}]' ({exc})"
        ) from None
