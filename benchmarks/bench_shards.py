"""WebDataset shards for the recaption benchmark: the input (variants of real photos), and the
captions read back from an output, with the `webdataset` library as trainers read them."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from bench_models import variant


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def make_shards(photos: Path, folder: Path, shards: int, copies: int, edge: int) -> list[Path]:
    """`shards` tar files (contiguous runs of samples) of `copies` variants of every photo."""
    import webdataset as wds

    paths = photos_in(photos)
    if not paths:
        raise SystemExit(f"no photos (.jpg, .jpeg, .png) under {photos}")
    total = len(paths) * copies
    folder.mkdir(parents=True, exist_ok=True)
    urls = [folder / f"in-{i:04d}.tar" for i in range(min(shards, total))]
    writers = [wds.TarWriter(str(url)) for url in urls]
    j = 0
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            image.draft("RGB", (edge, edge))
            image = image.convert("RGB")
        image.thumbnail((edge, edge))
        sidecar = path.with_suffix(".txt")
        old = sidecar.read_text().strip() if sidecar.exists() else f"a photo of a {path.parent.name}"
        for k in range(copies):
            buffer = io.BytesIO()
            variant(image, k).save(buffer, "JPEG", quality=90)
            props = {"photo": path.relative_to(photos).as_posix(), "variant": k}
            sample = {"__key__": f"{i:04d}-{k:02d}", "jpg": buffer.getvalue(), "txt": old.encode()}
            writers[j * len(urls) // total].write({**sample, "json": json.dumps(props).encode()})
            j += 1
    for writer in writers:
        writer.close()
    return urls


def captions(folder: Path) -> dict[str, str]:
    """Input key -> new caption, from the output shards in `folder` (read with `webdataset`)."""
    import webdataset as wds

    urls = sorted(str(p) for p in folder.glob("*.tar"))
    samples = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    return {s["__key__"].rsplit("/", 1)[-1]: s["txt"].decode() for s in samples}
