"""watermark: a user's ONNX classifier (a tiny one built here) and Stable Diffusion's invisible mark."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from captionary import Load, ParamError, Workspace
from captionary.steps.scores.watermark import SD_MESSAGES, Watermark

WEIGHTS = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, -4.0]], dtype=np.float32)  # "watermark" = redder than blue
BIAS = np.array([0.0, 0.5], dtype=np.float32)


def tiny_classifier(path: Path, layout: str = "NCHW", size: int = 32, batch: int | str = "N") -> Path:
    """Mean colour -> 2 logits: GlobalAveragePool + Gemm (NCHW), or ReduceMean + Gemm (NHWC)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    nodes = [
        helper.make_node("ReduceMean", ["image", "axes"], ["pooled"], keepdims=0),
        helper.make_node("Gemm", ["pooled", "w", "b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_watermark",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 2])],
        [
            numpy_helper.from_array(np.array(axes, dtype=np.int64), "axes"),
            numpy_helper.from_array(WEIGHTS, "w"),
            numpy_helper.from_array(BIAS, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def expected(item, size: int = 32) -> float:
    """The same computation by hand: resize, 0-1, ImageNet normalisation, mean colour, softmax."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = np.asarray(item.image.convert("RGB").resize((size, size)), np.float64) / 255
    colour = ((pixels - mean) / std).mean(axis=(0, 1))
    logits = WEIGHTS.astype(np.float64) @ colour + BIAS
    return float(np.exp(logits[1]) / np.exp(logits).sum())


@pytest.mark.parametrize(("layout", "batch"), [("NCHW", "N"), ("NHWC", 1)])
def test_onnx_classifier_probability_matches_a_direct_computation(photos, ws_path, tmp_path, layout, batch):
    model = tiny_classifier(tmp_path / "wm.onnx", layout, batch=batch)
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> Watermark(model=str(model), batch_size=5), progress=False)
        items = list(ws.items())
    assert not summary.errors and summary.step("watermark").computed == 12
    for item in items:
        assert item["watermark"] == pytest.approx(expected(item), abs=1e-4)
        assert "sd_watermark" not in item.props
    assert len({round(i["watermark"], 3) for i in items}) > 6


def test_a_class_the_model_does_not_have_fails_each_item(photos, ws_path, tmp_path):
    model = tiny_classifier(tmp_path / "wm.onnx")
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(photos) >> Watermark(model=str(model), watermark_class=5), progress=False)
    assert summary.step("watermark").failed == 12
    assert "has 2 outputs; no class 5" in summary.errors[0]["reason"]


def test_parameters_are_checked_when_built(tmp_path):
    with pytest.raises(ParamError, match="give `model`"):
        Watermark()
    with pytest.raises(ParamError, match="no such file"):
        Watermark(model=str(tmp_path / "missing.onnx"))


def test_stable_diffusion_invisible_watermark(photos, ws_path, tmp_path):
    imwatermark = pytest.importorskip("imwatermark")
    folder = tmp_path / "sd"
    folder.mkdir()
    photo = np.asarray(Image.open(photos / "cat" / "00.jpg").convert("RGB").resize((512, 512)))
    bgr = np.ascontiguousarray(photo[:, :, ::-1])
    for name, message in SD_MESSAGES.items():  # what the SD 1.x scripts and diffusers' SDXL do
        encoder = imwatermark.WatermarkEncoder()
        encoder.set_watermark("bits", message)
        marked = encoder.encode(bgr, "dwtDct")[:, :, ::-1]
        Image.fromarray(marked).save(folder / f"{name}.png")
        Image.fromarray(marked).save(folder / f"{name}_reencoded.jpg", quality=90)
    Image.fromarray(photo).save(folder / "clean.png")
    shutil.copy(photos / "dog" / "00.jpg", folder / "photo.jpg")
    with Workspace(ws_path) as ws:
        summary = ws.run(Load(folder) >> Watermark(invisible=True), progress=False)
        found = {item.name: item["sd_watermark"] for item in ws.items()}
    assert not summary.errors
    print(found)
    assert found["sd1"] >= 0.97 and found["sdxl"] >= 0.97
    assert found["clean"] < 0.75 and found["photo"] < 0.75
    assert found["sd1_reencoded"] < 0.9 and found["sdxl_reencoded"] < 0.9  # documented: JPEG erases it
