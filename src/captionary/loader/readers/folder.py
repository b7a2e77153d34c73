"""kohya folders: images with caption files beside them (`dog/00.jpg` + `dog/00.txt`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from captionary.loader.records import Record, captions_of

CAPTION_EXTENSIONS = (".txt", ".caption")
REPEATS_FOLDER = re.compile(r"^(\d+)_(.+)$")  # kohya's DreamBooth layout: `10_sks dog/`


def image_extensions() -> frozenset[str]:
    from captionary.core.images import readable_extensions

    return readable_extensions()


def read_folder(root: Path, *, caption_ext: str | None = None, **_: object) -> list[Record]:
    """Every image under `root` (recursive, sorted); its caption file (one caption per line), or for a
    kohya `N_class tokens` folder without caption files, the class tokens. Images of an `N_...` folder
    are repeated N times per epoch (by `BucketBatchSampler`), as kohya does."""
    extensions = image_extensions()
    suffixes = (caption_ext,) if caption_ext else CAPTION_EXTENSIONS
    records = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            stem, ext = os.path.splitext(filename)
            if ext.lower() not in extensions or filename.startswith("."):
                continue
            path = os.path.join(dirpath, filename)
            captions: tuple[str, ...] = ()
            match = REPEATS_FOLDER.match(os.path.basename(dirpath)) if dirpath != str(root) else None
            for suffix in suffixes:
                sidecar = os.path.join(dirpath, stem + suffix)
                if os.path.isfile(sidecar):
                    with open(sidecar, encoding="utf-8") as f:
                        captions = captions_of(f.read())
                    break
            else:
                if match:
                    captions = (match.group(2),)  # kohya: the class tokens when there is no caption file
            relative = Path(path).relative_to(root).as_posix()
            repeats = max(1, int(match.group(1))) if match else 1
            records.append(Record(relative.rpartition(".")[0], path, captions, where=path, repeats=repeats))
    return records


def read_files(paths: list[str], **_: object) -> list[Record]:
    """Image files matched by a glob, with their caption files."""
    records = []
    for path in sorted(paths):
        stem = os.path.splitext(path)[0]
        captions: tuple[str, ...] = ()
        for suffix in CAPTION_EXTENSIONS:
            if os.path.isfile(stem + suffix):
                with open(stem + suffix, encoding="utf-8") as f:
                    captions = captions_of(f.read())
                break
        records.append(Record(stem, path, captions, where=path))
    return records
