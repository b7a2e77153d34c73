"""Running a pipeline on a workspace: the floor above the executors. `Workspace.run` (core) calls
`run_pipeline` through the runner registered here, so core never imports executors or steps."""

from __future__ import annotations

from typing import Any

from captionary.core.workspace import Workspace, set_runner
from captionary.executors import get_executor
from captionary.executors.summary import RunSummary
from captionary.pipeline.pipeline import Pipeline
from captionary.pipeline.step import Step


def run_pipeline(
    ws: Workspace, pipeline: Pipeline | Step, executor: str = "local", **options: Any
) -> RunSummary:
    """Run a pipeline (or one step) on `ws` with the named executor; options go to the executor."""
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline([pipeline])
    return get_executor(executor, **options).run(ws, pipeline)


set_runner(run_pipeline)
