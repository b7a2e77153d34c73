"""Tiny YOLO-style ONNX detectors built with the `onnx` helper API: the real signature (input `images`
1 x 3 x H x W float32, output `output0`, Ultralytics' `imgsz` / `names` metadata), known boxes.

The output is a fixed tensor plus 0 x the mean of the input, so onnxruntime runs the graph on the
image (the input is consumed) and the boxes are exactly those the test wrote. `region_detector`
instead finds something in the image: the bright pixels, as one box of the input's grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def yolo_onnx(
    path: Path,
    output: np.ndarray,
    *,
    input_size: tuple[int, int] | None = (64, 64),
    names: dict[int, str] | None = None,
    imgsz: list[int] | None = None,
) -> Path:
    """A detector whose `output0` is `output` (e.g. [1, 4 + nc, N] raw or [1, N, 6] end-to-end).
    `input_size` (w, h), or None for a dynamic H x W (then `imgsz` metadata says the size)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    width, height = input_size or ("width", "height")
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, height, width])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["boxes", "nothing"], ["output0"]),
    ]
    init = [
        numpy_helper.from_array(np.asarray(output, np.float32), "boxes"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
    ]
    graph = helper.make_graph(nodes, "tiny_yolo", [image], [out], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {}
    if names is not None:
        meta["names"] = repr(names)
    if imgsz is not None:
        meta["imgsz"] = repr(imgsz)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def raw_output(rows: list[tuple[float, float, float, float, list[float]]], n: int = 16) -> np.ndarray:
    """[1, 4 + nc, n]: columns (cx, cy, w, h, class scores...) for the given rows, zeros after."""
    nc = len(rows[0][4])
    out = np.zeros((1, 4 + nc, n), np.float32)
    for i, (cx, cy, w, h, scores) in enumerate(rows):
        out[0, :, i] = [cx, cy, w, h, *scores]
    return out


def region_detector(path: Path, size: int = 64, label: str = "person") -> Path:
    """A raw-form detector that "finds" the bright part of the image: one candidate per cell of a
    `size / 8` grid (8 x 8 cells), scored by the cell's mean brightness; NMS and the score floor
    leave the bright cells. So a white square pasted on black comes back as the cells it covers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cells, cell = 8, size // 8
    centres = (np.arange(cells) + 0.5) * cell
    cy, cx = np.meshgrid(centres, centres, indexing="ij")
    geometry = np.stack([cx.ravel(), cy.ravel(), np.full(64, cell), np.full(64, cell)])  # [4, 64]
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, cells * cells])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["grey"], axes=[1], keepdims=1),  # [1, 1, s, s]
        helper.make_node(
            "AveragePool", ["grey"], ["pooled"], kernel_shape=[cell, cell], strides=[cell, cell]
        ),
        helper.make_node("Reshape", ["pooled", "flat_shape"], ["scores"]),  # [1, 1, 64]
        helper.make_node("Concat", ["geometry", "scores"], ["output0"], axis=1),
    ]
    init = [
        numpy_helper.from_array(geometry[None].astype(np.float32), "geometry"),
        numpy_helper.from_array(np.array([1, 1, cells * cells], np.int64), "flat_shape"),
    ]
    graph = helper.make_graph(nodes, "tiny_region_yolo", [image], [out], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", repr({0: label})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
