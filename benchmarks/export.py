"""Export throughput per format: `save` on real photos (some stored turned, with an EXIF orientation),
next to a plain Pillow loop writing the same files, interleaved in the same run.

The input: the DreamBooth photos with a caption file each; every `--turned`-th photo is stored turned
with EXIF orientation 6, 8 or 3 (as a phone writes it), so both sides must turn its pixels upright.
`save` runs on an already ingested workspace (the load step is a cache hit), into a fresh folder each
time: what is measured is the export. The baseline is the loop a person writes by hand for the same
format: copy an upright JPEG's bytes, turn and re-encode a turned one (Pillow, quality 95), write the
caption / manifest / Parquet table / tar shard.

    python benchmarks/export.py                      # ../shared/data/dreambooth if present
    python benchmarks/export.py --photos examples/photos --reps 3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

from captionary import Load, Save, Workspace

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
ORIENTATION = 0x0112
TURNS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
FORMATS = {
    "kohya": {},
    "kohya_json": {},
    "imagefolder": {},
    "jsonl": {},
    "parquet": {"embed_images": True},
    "webdataset": {},
}


def prepare(photos: Path, folder: Path, every: int) -> tuple[int, int]:
    """Copy the photos with a caption each; store every `every`-th one turned, with its EXIF tag."""
    paths = sorted(photos.rglob("*.jpg"))
    turned = 0
    for index, path in enumerate(paths):
        target = folder / path.relative_to(photos)
        target.parent.mkdir(parents=True, exist_ok=True)
        if index % every == 0:
            orientation = list(TURNS)[turned % 3]
            with Image.open(path) as image:
                exif = Image.Exif()
                exif[ORIENTATION] = orientation
                image.convert("RGB").transpose(TURNS[orientation]).save(
                    target, quality=95, exif=exif.tobytes()
                )
            turned += 1
        else:
            shutil.copyfile(path, target)
        target.with_suffix(".txt").write_text(f"a photo of {path.parent.name}\n")
    return len(paths), turned


def upright_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.getexif().get(ORIENTATION, 1) == 1:
            return data
        buffer = io.BytesIO()
        ImageOps.exif_transpose(image).save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


def plain_loop(src: Path, out: Path, fmt: str) -> int:
    """The same files, written by hand."""
    rows, samples = [], []
    for path in sorted(src.rglob("*.jpg")):
        relative = path.relative_to(src)
        caption = path.with_suffix(".txt").read_text().strip()
        data = upright_bytes(path)
        if fmt == "webdataset":
            samples.append((relative.with_suffix("").as_posix(), data, caption))
            continue
        flat = relative.with_suffix("").as_posix().replace("/", "_") + ".jpg"
        if fmt == "kohya":
            target = out / f"1_{relative.parent}" / relative.name
        elif fmt == "kohya_json":
            target = out / flat
        elif fmt == "imagefolder":
            target = out / "train" / relative
        elif fmt == "parquet":
            rows.append({"image": {"bytes": data, "path": relative.as_posix()}, "caption": caption})
            continue
        else:
            target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if fmt == "kohya":
            target.with_suffix(".txt").write_text(caption + "\n")
        rows.append({"file_name": target.relative_to(out).as_posix(), "caption": caption})
    if fmt in ("imagefolder", "jsonl"):
        manifest = out / ("train" if fmt == "imagefolder" else "") / "metadata.jsonl"
        manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif fmt == "kohya_json":
        table = {row["file_name"].rpartition(".")[0]: {"caption": row["caption"]} for row in rows}
        (out.parent / f"{out.name}.json").write_text(json.dumps(table))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        (out / "data").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), out / "data" / "train-00000-of-00001.parquet")
    elif fmt == "webdataset":
        out.mkdir(parents=True)
        with tarfile.open(out / "shard-000000.tar", "w") as tar:
            for key, data, caption in samples:
                for ext, content in ((".jpg", data), (".txt", caption.encode())):
                    info = tarfile.TarInfo(key + ext)
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
    return len(rows) + len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fallback = REPO / "examples" / "photos"
    parser.add_argument("--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else fallback)
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions (default 2)")
    parser.add_argument("--turned", type=int, default=6, help="every N-th photo stored turned (default 6)")
    parser.add_argument("--formats", nargs="*", default=list(FORMATS), choices=list(FORMATS))
    args = parser.parse_args()
    import pyarrow.parquet  # noqa: F401 (imported before timing: both sides use it)

    root = Path(tempfile.mkdtemp(prefix="captionary-export-"))
    try:
        count, turned = prepare(args.photos, root / "in", args.turned)
        times: dict[tuple[str, str], list[float]] = {}
        with Workspace(root / "ws") as ws:
            ws.run(Load(root / "in"), progress=False)  # ingest once: the runs below time the export
            for rep in range(args.reps):
                for fmt in args.formats:
                    out = root / f"plain-{fmt}-{rep}" / "out"
                    start = time.perf_counter()
                    written = plain_loop(root / "in", out, fmt)
                    times.setdefault((fmt, "plain"), []).append(time.perf_counter() - start)
                    assert written == count, (fmt, written)
                    out = root / f"save-{fmt}-{rep}" / "out"
                    save = Save(out, format=fmt, repeats=1 if fmt == "kohya" else None, **FORMATS[fmt])
                    start = time.perf_counter()
                    summary = ws.run(Load(root / "in") >> save, progress=False)
                    times.setdefault((fmt, "save"), []).append(time.perf_counter() - start)
                    assert summary.step("save").computed == count, summary.table()
        print(
            f"{count} photos from {args.photos} ({turned} stored turned with an EXIF orientation); "
            f"{os.cpu_count()} cores; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
            f"median of {args.reps} interleaved runs\n"
        )
        print(f"{'format':<14}{'plain Pillow img/s':>20}{'save img/s':>12}{'save / plain':>14}")
        for fmt in args.formats:
            plain = statistics.median(times[(fmt, "plain")])
            ours = statistics.median(times[(fmt, "save")])
            print(f"{fmt:<14}{count / plain:>20.1f}{count / ours:>12.1f}{plain / ours:>13.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
