"""The `if __name__ == "__main__":` guard a script needs when its pipeline starts worker processes.

Pool workers are started with `spawn`: each imports the user's script again. A script that runs its
pipeline at module level would run it again in every worker (which then finds the workspace locked,
and the pool breaks). So, before a run that would start the pool, `check_main_guard` finds the line
of the main script that is running the pipeline and refuses the run, in one clear message, unless
that line is under the guard. As a safety net, a spawned worker that finds itself re-importing the
script into a run exits at once with `REIMPORT_EXIT`, and the executor reports the same message.
"""

from __future__ import annotations

import ast
import sys
from types import FrameType

from captionary.errors import ConfigError

REIMPORT_EXIT = 86
"""Exit code of a spawned worker that found the user's script starting a run while it was imported."""


def guard_message(path: str, line: int | None) -> str:
    where = f"{path}:{line}" if line else path
    return (
        f"{where}: the pipeline runs at the top level of the script, and the worker processes that "
        f"run image steps import the script again (spawn), so each would run it again. Put it under "
        f'`if __name__ == "__main__":` (or pass workers=0)'
    )


def check_main_guard() -> None:
    """Raise ConfigError if the main script runs this pipeline outside `if __name__ == "__main__":`;
    exit at once (REIMPORT_EXIT) if this is a spawned worker importing that script."""
    multiprocessing = sys.modules.get("multiprocessing")  # a spawned worker has it; a run need not load it
    if multiprocessing is not None and getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SystemExit(REIMPORT_EXIT)  # a pool worker importing an unguarded script: say nothing
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return  # an interactive session or a notebook: nothing is re-imported
    line = _module_level_line(path)
    if line is not None and not _guarded(path, line):
        raise ConfigError(guard_message(path, line))


def _module_level_line(path: str) -> int | None:
    """The line of the main script's top-level code that is executing now (None: not inside it)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if (
            code.co_name == "<module>"
            and code.co_filename == path
            and frame.f_globals.get("__name__") == "__main__"
        ):
            return frame.f_lineno
        frame = frame.f_back
    return None


def _guarded(path: str, line: int) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return True  # cannot tell: do not stand in the way
    for node in ast.walk(tree):
        inside = isinstance(node, ast.If) and node.body[0].lineno <= line <= (
            node.body[-1].end_lineno or line
        )
        if inside and _is_main_test(node.test):
            return True
    return False


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    constants = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and constants == ["__main__"]
