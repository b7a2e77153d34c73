"""`captionary push OUT REPO_ID`: upload an export folder to a Hugging Face dataset repository.

`huggingface_hub` does the work: `upload_large_folder` where the installed version has it (resumable,
multi-commit), else `upload_folder`, which in huggingface_hub 1.x+ with `hf_xet` is the same streamed,
resumable, multi-commit upload. The token comes from where huggingface_hub looks (`HF_TOKEN`, or the
one `hf auth login` saved); `HF_ENDPOINT` picks another Hub. The dataset card `save` wrote
(README.md) goes along; an export without one (kohya) gets a short one written first."""

from __future__ import annotations

from pathlib import Path

from captionary.core import optional
from captionary.core.atomic import TMP_PREFIX, write_atomic
from captionary.errors import ConfigError
from captionary.sinks.card import CARD

IGNORED = [".images/**", f"{TMP_PREFIX}*", f"**/{TMP_PREFIX}*"]
"""Not uploaded: parquet's staged copies of embedded images, and temp files of an interrupted save."""


def push(folder: Path | str, repo_id: str, *, private: bool = False, revision: str | None = None) -> str:
    """Upload `folder` to the dataset repo `repo_id` (created if missing); returns its URL."""
    hub = optional.require("huggingface_hub", "hub", package="huggingface_hub")
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (the output folder of a save step)")
    if "/" not in repo_id.strip("/"):
        raise ConfigError(f"repo id {repo_id!r}: expected 'namespace/name', e.g. 'me/my-dataset'")
    if not (folder / CARD).exists():
        write_atomic(str(folder / CARD), minimal_card(folder).encode())
    api = hub.HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    options = {"repo_id": repo_id, "folder_path": str(folder), "repo_type": "dataset", "revision": revision}
    if hasattr(api, "upload_large_folder"):
        api.upload_large_folder(**options, ignore_patterns=IGNORED)
    else:
        api.upload_folder(
            **options, ignore_patterns=list(IGNORED), commit_message="Upload a captionary export"
        )
    return str(url)


def minimal_card(folder: Path) -> str:
    """A card for an export that has none: counts of images and caption files."""
    images = [p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    captions = [p for p in folder.rglob("*") if p.suffix in (".txt", ".caption")]
    return (
        "---\nlicense: unknown\ntask_categories:\n- text-to-image\ntags:\n- captionary\n---\n\n"
        f"# {folder.name}\n\nExported by captionary.\n\n- images: {len(images)}\n"
        f"- caption files: {len(captions)}\n- licence: unknown (edit this card)\n"
    )
