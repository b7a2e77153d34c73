"""A tiny WD14-style tagger built with the `onnx` helper API: the real signature, known scores.

Input `input_1:0`, float32 NHWC [batch, 448, 448, 3] (BGR 0-255); output `predictions_sigmoid`
[batch, n_tags]. Inside: the mean of each channel / 255 -> a linear layer -> sigmoid. So a solid
colour gives predictable scores: `red_background` fires on red, `white_background` on white, and
the "constant" tags always score their fixed probability, whatever the image.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# name, category, weights on (B, G, R) means in [0, 1], bias
TAGS: list[tuple[str, int, tuple[float, float, float], float]] = [
    ("general", 9, (0, 5, 0), -2),
    ("sensitive", 9, (0, 0, 5), -2),
    ("questionable", 9, (5, 0, 0), -2),
    ("explicit", 9, (0, 0, 0), -4),
    ("solo", 0, (0, 0, 0), logit(0.6)),
    ("smile", 0, (0, 0, 0), logit(0.3)),
    ("red_background", 0, (-6, -6, 8), -1),
    ("green_background", 0, (-6, 8, -6), -1),
    ("blue_background", 0, (8, -6, -6), -1),
    ("white_background", 0, (4, 4, 4), -9),
    ("^_^", 0, (0, 0, 0), logit(0.8)),
    ("long_hair", 0, (0, 0, 0), logit(0.5)),
    ("hatsune_miku_(vocaloid)", 4, (0, 0, 0), logit(0.9)),
    ("kagamine_rin", 4, (0, 0, 0), logit(0.5)),
    ("some_artist", 1, (0, 0, 0), logit(0.99)),  # category 1: ignored, as by the reference tagger
]


def expected_scores(bgr_means: tuple[float, float, float]) -> dict[str, float]:
    """What the model computes for an image whose channel means (0-1, BGR order) are given."""
    out = {}
    for name, _, weights, bias in TAGS:
        z = sum(w * m for w, m in zip(weights, bgr_means)) + bias
        out[name] = 1 / (1 + math.exp(-z))
    return out


def build_tagger(
    folder: Path,
    *,
    batch: int | str = "batch",
    size: int = 448,
    extra_outputs: int = 0,
    names: tuple[str, str] = ("input_1:0", "predictions_sigmoid"),
    channels_first: bool = False,
) -> Path:
    """Write `model.onnx` and `selected_tags.csv` into `folder` (created) and return it.

    `batch`: a name for a dynamic batch axis, or a fixed size. `extra_outputs` adds scores that the
    CSV does not list (a mismatched model). `names`: the input and output names (v2 taggers use
    the default, v3 ones `input` and `output`). `channels_first`: an NCHW input (not a WD14 layout)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    n = len(TAGS) + extra_outputs
    weights = np.zeros((3, n), dtype=np.float32)
    bias = np.zeros(n, dtype=np.float32)
    for i, (_, _, w, b) in enumerate(TAGS):
        weights[:, i] = w
        bias[i] = b
    source = names[0]
    shape = [batch, 3, size, size] if channels_first else [batch, size, size, 3]
    prelude = []
    if channels_first:
        prelude = [helper.make_node("Transpose", [names[0]], ["nhwc"], perm=[0, 2, 3, 1])]
        source = "nhwc"
    graph = helper.make_graph(
        [
            *prelude,
            # rows, then columns: two short float32 sums stay exact enough (one of 200,704 would not)
            helper.make_node("ReduceMean", [source], ["row_mean"], axes=[1], keepdims=0),
            helper.make_node("ReduceMean", ["row_mean"], ["mean"], axes=[1], keepdims=0),
            helper.make_node("Mul", ["mean", "scale"], ["features"]),
            helper.make_node("MatMul", ["features", "weights"], ["logits_raw"]),
            helper.make_node("Add", ["logits_raw", "bias"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], [names[1]]),
        ],
        "tiny_wd14",
        [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(names[1], TensorProto.FLOAT, [batch, n])],
        initializer=[
            numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    with (folder / "selected_tags.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tag_id", "name", "category", "count"])
        for i, (name, category, _, _) in enumerate(TAGS):
            writer.writerow([1000 + i, name, category, 100 - i])
    return folder


def solid(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Path:
    """A real PNG of one colour."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path
