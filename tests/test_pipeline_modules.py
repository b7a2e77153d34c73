"""A pipeline file is a program: a module it names (`imports:`, `apply`, `filter: {function}`) is
imported and run. One beside the YAML file is found wherever `captionary` is started from, after
Python's own path (it never shadows an installed or standard module)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_module_beside_the_yaml_is_found_from_any_folder_and_never_shadows(tmp_path, photos):
    project = tmp_path / "project"
    project.mkdir()
    (project / "t_beside_steps.py").write_text(
        textwrap.dedent("""\
        import colorsys  # the standard module, not the colorsys.py beside this file

        from captionary import step

        assert colorsys.rgb_to_hsv(1, 0, 0) == (0, 1, 1)

        @step(writes=("t_beside",), reads_image=False)
        def t_beside_mark(item):
            return {"t_beside": "ran"}

        def long_name(item):
            return len(item.name) > 1
        """)
    )
    (project / "colorsys.py").write_text("raise SystemExit('a module beside the YAML shadowed colorsys')\n")
    (project / "pipeline.yaml").write_text(
        textwrap.dedent(f"""\
        workspace: ws
        imports: [t_beside_steps]
        steps:
          - load: {{path: {photos}}}
          - t_beside_mark
          - filter: {{function: "t_beside_steps:long_name"}}
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "captionary.cli", "run", str(project / "pipeline.yaml"), "--no-progress"]
    done = subprocess.run(command, cwd="/", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout
    assert "t_beside_mark" in done.stdout and "filter" in done.stdout
