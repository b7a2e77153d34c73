"""Where a tagger's files are: a local folder (or `.onnx` file) or a Hugging Face repo id.

A local folder holds `model.onnx` and `selected_tags.csv`. A repo id (`SmilingWolf/wd-vit-tagger-v3`)
is fetched with `huggingface_hub.hf_hub_download` into its standard cache when the step first runs
(offline, `HF_HUB_OFFLINE=1` reads that cache). Files are fingerprinted cheaply (size, first and
last MiB) so a moved folder keeps its cache and a replaced model does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from captionary.core.optional import require
from captionary.errors import ConfigError

MODEL_FILE = "model.onnx"
TAGS_FILE = "selected_tags.csv"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class TaggerFiles:
    model: Path
    tags: Path


def local_files(model: str) -> TaggerFiles | None:
    """The files of a local tagger, None if `model` names nothing on disk; ConfigError if incomplete."""
    path = Path(model).expanduser()
    if path.is_dir():
        files = TaggerFiles(path / MODEL_FILE, path / TAGS_FILE)
    elif path.is_file():
        if path.suffix != ".onnx":
            raise ConfigError(f"expected a folder or an .onnx file, got {path}")
        files = TaggerFiles(path, path.parent / TAGS_FILE)
    else:
        return None
    for file in (files.model, files.tags):
        if not file.is_file():
            raise ConfigError(
                f"tagger file not found: {file} (a tagger folder holds {MODEL_FILE} and {TAGS_FILE})"
            )
    return files


def is_repo_id(model: str) -> bool:
    return bool(REPO_ID.match(model)) and not model.startswith((".", "~"))


def hub_files(repo_id: str, revision: str | None) -> TaggerFiles:
    """Download (or find in the local cache) a tagger's files from the Hugging Face hub."""
    hub = require("huggingface_hub", "onnx")
    try:
        paths = [hub.hf_hub_download(repo_id, name, revision=revision) for name in (MODEL_FILE, TAGS_FILE)]
    except Exception as exc:  # offline, unknown repo, missing file, no access: the hub says which
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise ConfigError(
            f"{repo_id!r} is not a local folder and cannot be fetched from the Hugging Face hub: {reason}"
        ) from None
    return TaggerFiles(Path(paths[0]), Path(paths[1]))
