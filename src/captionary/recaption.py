"""`captionary recaption`: the common large job in one call: WebDataset shards in, a VLM caption per
image, shards (or Parquet) out with the original image bytes untouched and the new caption beside the
original one.

It is an ordinary pipeline (`load_webdataset >> caption >> save`), so it is cached per sample in a
workspace: a killed or preempted job, run again, captions only the samples it had not committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from captionary.core.workspace import Workspace
from captionary.executors.summary import RunSummary
from captionary.pipeline.pipeline import Pipeline
from captionary.sinks.save import Save
from captionary.sources.webdataset import LoadWebDataset
from captionary.steps.vlm.caption import Caption


def recaption_pipeline(
    shards: str,
    out: Path,
    model: str,
    *,
    target: str = "recaption",
    format: Literal["webdataset", "parquet"] = "webdataset",
    shard_size: int = 1000,
    in_place: bool = False,
    **caption: Any,
) -> Pipeline:
    """The pipeline `recaption` runs. `caption` holds the caption step's options (`backend`, `prompt`,
    `max_tokens`, `batch_size`, ...). The new caption is the output's caption (`key.txt`, the
    `caption` column); every original property, the old caption included, stays in `key.json` / the
    other columns. `in_place`: the workspace keeps references to the input shards' images instead of
    copies (uncompressed shards only; see `load_webdataset`'s `copy`)."""
    if target == "caption":
        raise ValueError("target must not be 'caption': the original caption is kept beside the new one")
    save_options: dict[str, Any] = {"format": format, "caption_property": target}
    if format == "webdataset":
        save_options["shard_size"] = shard_size
    else:
        save_options["embed_images"] = True
    return (
        LoadWebDataset(shards, copy=not in_place)
        >> Caption(model=model, target=target, **caption)
        >> Save(out, **save_options)
    )


def recaption(
    shards: str,
    out: str | Path,
    model: str,
    *,
    workspace: str | Path | None = None,
    executor: str = "local",
    executor_options: dict[str, Any] | None = None,
    **options: Any,
) -> RunSummary:
    """Caption every image of `shards` with `model` and write `out`; see `recaption_pipeline`.

    workspace: where results are cached (default: `<out>.workspace` beside the output), which is what
    makes a second call resume instead of starting over.
    """
    out = Path(out)
    pipeline = recaption_pipeline(shards, out, model, **options)
    with Workspace(Path(workspace) if workspace else out.with_name(out.name + ".workspace")) as ws:
        return ws.run(pipeline, executor=executor, **(executor_options or {}))
