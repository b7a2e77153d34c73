"""The dataset card (`README.md` at the export's root) the Hugging Face Hub shows: YAML metadata
(licence, and for Parquet the `configs` that make `load_dataset(out)` read `data/`), counts, caption
statistics, how to load the export, and the pipeline that made it."""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from captionary.core.hashing import hash_bytes
from captionary.sinks.files import NotOurs

if TYPE_CHECKING:
    from captionary.sinks.captions import Captions
    from captionary.sinks.files import OutputFiles
    from captionary.sinks.save import Save

log = logging.getLogger("captionary")
CARD = "README.md"

HF_LOADING = (
    'from datasets import load_dataset\n\nds = load_dataset("{out}", split="train")  # or the repo id'
)
LOADING = {
    "parquet": HF_LOADING,
    "imagefolder": HF_LOADING,
    "jsonl": HF_LOADING,
    "webdataset": (
        'import glob\n\nimport webdataset as wds\n\nshards = sorted(glob.glob("{out}/shard-*.tar"))\n'
        'ds = wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg;png;webp", "txt")'
    ),
    "kohya": "accelerate launch train_network.py --train_data_dir {out} --caption_extension {ext} ...",
    "kohya_json": "accelerate launch fine_tune.py --train_data_dir {out} --in_json {out}.json ...",
}


def card_text(
    save: Save, pipeline: Any, counts: dict[str, int], words: list[int], parquet_files: bool
) -> str:
    meta = [
        "---",
        f"license: {save.license or 'unknown'}",
        "task_categories:",
        "- text-to-image",
        "tags:",
        "- captionary",
    ]
    if parquet_files:
        meta += [
            "configs:",
            "- config_name: default",
            "  data_files:",
            "  - split: train",
            "    path: data/train-*",
        ]
    meta.append("---")
    exported = counts.get("exported", 0)
    lines = [
        *meta,
        "",
        f"# {save.path.name}",
        "",
        f"Exported by captionary (`save: {{format: {save.format}}}`).",
        "",
        f"- items: {exported}",
        f"- with a caption: {len(words)}",
    ]
    for key in ("uncaptioned_exported_with_empty_caption", "uncaptioned_skipped", "uncaptioned_failed"):
        if counts.get(key):
            lines.append(f"- {key.replace('_', ' ')}: {counts[key]}")
    if words:
        import statistics  # here, not at start-up (with fractions and decimal)

        lines.append(
            f"- caption words: min {min(words)}, median {statistics.median(words):g}, "
            f"mean {statistics.fmean(words):.1f}, max {max(words)}"
        )
    lines += [f"- licence: {save.license or 'unknown (set save: {license: ...})'}", "", "## Loading", ""]
    lines += ["```python", LOADING[save.format].format(out=save.path.name, ext=save.caption_ext), "```", ""]
    lines += [
        "## The pipeline that made it",
        "",
        "```json",
        json.dumps(pipeline, indent=1, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def run_pipeline(ctx: Any) -> Any:
    """The run's pipeline as `runs.pipeline` recorded it (steps and parameters), local absolute paths
    shortened to their last part (a card is published)."""
    rows = ctx.ws.query("SELECT pipeline FROM runs WHERE id = ?", (ctx.run_id,))
    return _without_local_paths(json.loads(rows[0][0])) if rows and rows[0][0] else None


def _without_local_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_local_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    return value


def write_card(files: OutputFiles, save: Save, ctx: Any, captions: Captions, exported: int) -> None:
    """Write (or leave unchanged) the card; a README.md that is not ours, or edited, is left alone."""
    counts = {**captions.counts, "exported": exported}
    text = card_text(save, run_pipeline(ctx), counts, captions.words, save.format == "parquet")
    data = text.encode()
    try:
        files.write(CARD, None, hash_bytes(data), data)
    except NotOurs as exc:
        log.warning("dataset card not written: %s", exc)
