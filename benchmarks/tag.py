"""Throughput of the `tag` step against calling the onnxruntime session directly, in the same run.

The model has the WD14 signature (`input_1:0` float32 NHWC [N, 448, 448, 3] -> [N, 10861] sigmoid,
the size of the v3 taggers' tag list) with random weights: three strided convolutions, global average
pooling and a linear layer, so it runs on any machine without a download. `--model DIR` runs a real
tagger folder instead (`model.onnx` + `selected_tags.csv`). Rows, all on the same photos:

- the session alone on already preprocessed images (batches of --batch-size): the model's own cost
- a plain loop: decode, WD14 preprocessing, session, one process (what a person writes by hand)
- captionary `load >> tag` first run, then a fully cached re-run

    python benchmarks/tag.py                             # ../shared/data/dreambooth if present
    python benchmarks/tag.py --photos examples/photos --batch-size 4
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from captionary import Load, Tag, Workspace
from captionary.backends.onnx import image_input, load_session
from captionary.steps.tags.wd14 import prepare_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "dreambooth"
N_TAGS = 10861


def build_model(folder: Path, seed: int = 0) -> Path:
    """A random-weight convnet with the WD14 signature, and a tag CSV of N_TAGS rows."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    layers = [(3, 32, 4, 4), (32, 64, 3, 2), (64, 128, 3, 2)]  # in, out, kernel, stride
    nodes = [helper.make_node("Transpose", ["input_1:0"], ["x0"], perm=[0, 3, 1, 2])]
    inits = [numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale")]
    nodes.append(helper.make_node("Mul", ["x0", "scale"], ["h0"]))
    for i, (cin, cout, k, s) in enumerate(layers):
        w = rng.normal(0, (2 / (cin * k * k)) ** 0.5, (cout, cin, k, k)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [f"h{i}", f"w{i}"], [f"c{i}"], strides=[s, s]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"h{i + 1}"]))
    head = rng.normal(0, 1.0, (layers[-1][1], N_TAGS)).astype(np.float32)
    inits.append(numpy_helper.from_array(head, "head"))
    # a negative bias, so that a few dozen tags per image pass 0.35, as with a trained tagger
    inits.append(numpy_helper.from_array(np.full(N_TAGS, -11.0, dtype=np.float32), "bias"))
    nodes += [
        helper.make_node("GlobalAveragePool", [f"h{len(layers)}"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "head"], ["raw"]),
        helper.make_node("Add", ["raw", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"]),
    ]
    graph = helper.make_graph(
        nodes,
        "wd14_like",
        [helper.make_tensor_value_info("input_1:0", TensorProto.FLOAT, ["batch", 448, 448, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, ["batch", N_TAGS])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    with (folder / "selected_tags.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i in range(N_TAGS):  # 4 ratings, then general tags, the last 2,751 characters (as v3)
            category = 9 if i < 4 else (4 if i >= N_TAGS - 2751 else 0)
            writer.writerow([i, f"tag_{i}", category, N_TAGS - i])
    return folder


def plain_loop(paths: list[Path], session, name: str, size: int, batch_size: int) -> tuple[float, float]:
    """Decode, preprocess and run batch by batch, one process: (preprocess seconds, session seconds)."""
    prep_s = model_s = 0.0
    for i in range(0, len(paths), batch_size):
        start = time.perf_counter()
        arrays = []
        for path in paths[i : i + batch_size]:
            with Image.open(path) as image:
                arrays.append(prepare_image(image, size))
        batch = np.stack(arrays)
        prep_s += time.perf_counter() - start
        start = time.perf_counter()
        session.run(None, {name: batch})
        model_s += time.perf_counter() - start
    return prep_s, model_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    fallback = REPO / "examples" / "photos"
    parser.add_argument("--photos", type=Path, default=DEFAULT if DEFAULT.is_dir() else fallback)
    parser.add_argument("--model", type=Path, help="a tagger folder (default: a random-weight model)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="captionary-tag-"))
    try:
        model = args.model or build_model(root / "model")
        paths = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        count = len(paths)
        session = load_session(model / "model.onnx")
        spec = image_input(session)
        size = spec.height or 448
        before = plain_loop(paths, session, spec.name, size, args.batch_size)

        with Workspace(root / "ws") as ws:
            start = time.perf_counter()
            summary = ws.run(
                Load(args.photos) >> Tag(model=str(model), batch_size=args.batch_size), progress=False
            )
            ours_s = time.perf_counter() - start
            start = time.perf_counter()
            cached = ws.run(
                Load(args.photos) >> Tag(model=str(model), batch_size=args.batch_size), progress=False
            )
            cached_s = time.perf_counter() - start
            n_tags = sum(len(item["tags"]) for item in ws.items()) / count
        assert summary.step("tag").computed == count, summary.table()
        assert cached.step("tag").computed == 0, cached.table()
        after = plain_loop(paths, session, spec.name, size, args.batch_size)  # the machine's load drifts
        plain_s = (sum(before) + sum(after)) / 2

        print(
            f"{count} photos from {args.photos}; {os.cpu_count()} cores; batch size {args.batch_size}; "
            f"model {'random-weight WD14-like convnet' if args.model is None else model}; "
            f"providers {session.get_providers()}; {n_tags:.1f} tags per image\n"
        )
        print(f"{'run':<52}{'wall s':>9}{'images/s':>10}{'vs plain':>10}")
        for label, seconds in [
            ("session.run alone (model only, in the plain loop)", (before[1] + after[1]) / 2),
            ("plain loop: decode + preprocess + session, before", sum(before)),
            ("plain loop, again after captionary's runs", sum(after)),
            ("captionary load >> tag, first run", ours_s),
            ("captionary re-run (all cached)", cached_s),
        ]:
            print(f"{label:<52}{seconds:>9.2f}{count / seconds:>10.1f}{plain_s / seconds:>9.2f}x")
        print("\n(vs plain: the mean of the two plain loops divided by the row's time)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
