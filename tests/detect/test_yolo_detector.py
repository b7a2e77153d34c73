"""The YOLO-style ONNX detector on tiny detectors with the real signature: boxes decoded back to the
image (letterbox and stretch undone), per-class NMS, the score floor, labels from metadata, dynamic
inputs, refused output forms, and detector names (local file, folder, hub id) checked up front."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_detectors import raw_output, region_detector, yolo_onnx

from captionary.errors import ConfigError
from captionary.steps.detect.base import Settings, detector_spec
from captionary.steps.detect.yolo import YoloDetector
from captionary.steps.detect.yolo_decode import PAD_VALUE, decode, fit, input_tensor, nms

NAMES = {0: "person", 1: "head"}
# a 200 x 100 image letterboxed into 64 x 64: scale 0.32, 64 x 32 placed 16 px down
A = (32, 32, 32, 16, [0.9, 0.0])  # person: input box [16, 24, 48, 40] = image [0.25, 0.25, 0.75, 0.75]
B = (33, 32, 32, 16, [0.8, 0.0])  # the same person, a pixel to the right: suppressed by A
C = (32, 32, 32, 16, [0.0, 0.7])  # a head on the same box: another class, kept
D = (10, 30, 8, 8, [0.2, 0.0])  # below the default floor (0.3)
E = (32, 8, 16, 8, [0.95, 0.0])  # entirely in the letterbox's top padding: not in the image


def boxes(detections):
    return [(d.label, [round(v, 4) for v in d.box], round(d.score, 3)) for d in detections]


def test_raw_output_is_decoded_to_image_fractions_with_nms_and_floor(tmp_path):
    model = yolo_onnx(tmp_path / "raw.onnx", raw_output([A, B, C, D, E]), names=NAMES)
    found = YoloDetector(model, Settings()).detect(Image.new("RGB", (200, 100)))
    assert boxes(found) == [
        ("person", [0.25, 0.25, 0.75, 0.75], 0.9),
        ("head", [0.25, 0.25, 0.75, 0.75], 0.7),
    ]
    lower = YoloDetector(model, Settings(min_score=0.1)).detect(Image.new("RGB", (200, 100)))
    # D: x (10 -+ 4) / 0.32 / 200, y (30 -+ 4 - 16) / 0.32 / 100
    assert ("person", [0.0938, 0.3125, 0.2188, 0.5625], 0.2) in boxes(lower)
    looser = YoloDetector(model, Settings(iou=0.99)).detect(Image.new("RGB", (200, 100)))
    assert [d.score for d in looser] == pytest.approx([0.9, 0.8, 0.7])  # B survives a looser NMS


def test_end_to_end_output_with_stretched_input(tmp_path):
    rows = np.zeros((1, 10, 6), np.float32)
    rows[0, 0] = [16, 16, 48, 48, 0.8, 1]  # stretch 200 x 100 -> 64 x 64: x / 0.32, y / 0.64
    rows[0, 1] = [0, 0, 32, 32, 0.1, 0]  # below the floor
    model = yolo_onnx(tmp_path / "e2e.onnx", rows, names=NAMES)
    found = YoloDetector(model, Settings(resize="stretch")).detect(Image.new("RGB", (200, 100)))
    assert boxes(found) == [("head", [0.25, 0.25, 0.75, 0.75], 0.8)]
    letterboxed = YoloDetector(model, Settings()).detect(Image.new("RGB", (200, 100)))
    assert boxes(letterboxed) == [("head", [0.25, 0.0, 0.75, 1.0], 0.8)]  # y 16..48 -> 0..100 px, clipped


def test_dynamic_input_takes_imgsz_metadata_and_labels_default_to_class_numbers(tmp_path):
    raw = raw_output([(64, 64, 64, 32, [0.9])])  # in a 128 x 128 input: [32, 48, 96, 80]
    model = yolo_onnx(tmp_path / "dyn.onnx", raw, input_size=None, imgsz=[128, 128])
    detector = YoloDetector(model, Settings())
    assert detector.input_size == (128, 128)
    # 256 x 128 -> 128 x 64 placed 32 px down: x 32..96 -> 64..192 of 256; y 48..80 -> 32..96 of 128
    assert boxes(detector.detect(Image.new("RGB", (256, 128)))) == [("class0", [0.25, 0.25, 0.75, 0.75], 0.9)]


def test_a_detector_sees_the_image_where_the_letterbox_put_it(tmp_path):
    model = region_detector(tmp_path / "bright.onnx")  # one 8 x 8 cell per candidate, scored by brightness
    image = Image.new("RGB", (128, 64))
    image.paste((255, 255, 255), (32, 16, 64, 48))  # a white square; the letterbox: x 0.5, 16 px down
    found = YoloDetector(model, Settings(min_score=0.3)).detect(image)
    # the grey padding (114/255 = 0.45) scores above the floor, but lies outside the image: dropped
    assert len(found) == 4 and {d.label for d in found} == {"person"}
    union = [min(d.box[0] for d in found), min(d.box[1] for d in found)]
    union += [max(d.box[2] for d in found), max(d.box[3] for d in found)]
    assert union == pytest.approx([32 / 128, 16 / 64, 64 / 128, 48 / 64])


def test_input_tensor_is_letterboxed_rgb_in_0_1():
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    geometry = fit(image.size, (64, 64), "letterbox")
    assert (geometry.sx, geometry.sy, geometry.dx, geometry.dy) == (0.32, 0.32, 0.0, 16.0)
    tensor = input_tensor(image, geometry, (64, 64))
    assert tensor.shape == (1, 3, 64, 64) and tensor.dtype == np.float32
    assert np.allclose(tensor[0, :, :16], PAD_VALUE / 255) and np.allclose(tensor[0, :, 48:], PAD_VALUE / 255)
    assert np.allclose(tensor[0, 0, 16:48], 1.0) and np.allclose(tensor[0, 1:, 16:48], 0.0)


def test_nms_is_per_class_and_keeps_the_best_first():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(b, scores, classes, 0.5).tolist() == [1, 2, 3]
    assert nms(b, scores, classes, 0.9).tolist() == [1, 2, 3, 0]


def test_unsupported_output_forms_are_refused_with_the_shape():
    with pytest.raises(ConfigError, match=r"shape \[10, 7\].*expected \[1, 4 \+ classes, N\]"):
        decode(np.zeros((1, 10, 7), np.float32), 2, 0.3, 0.5)  # e.g. YOLOv5's objectness column
    with pytest.raises(ConfigError, match="names class 5, but it has 2 labels"):
        decode(np.array([[[0, 0, 1, 1, 0.9, 5]]], np.float32), 2, 0.3, 0.5)


def test_model_with_wrong_input_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    nhwc = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 64, 64, 3])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 64, 64, 3])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output0"])], "g", [nhwc], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "nhwc.onnx"))
    with pytest.raises(ConfigError, match=r"is not 1 x 3 x H x W"):
        YoloDetector(tmp_path / "nhwc.onnx", Settings())


def test_detector_names(tmp_path):
    model = yolo_onnx(tmp_path / "person" / "model.onnx", raw_output([A]), names=NAMES)
    assert detector_spec(str(model)).kind == "onnx"
    assert detector_spec(str(model.parent)).path == model  # a folder holding model.onnx
    hub = detector_spec("deepghs/anime_head_detection/head_detect_v2.0_s")
    assert (hub.kind, hub.repo, hub.file) == (
        "hub",
        "deepghs/anime_head_detection",
        "head_detect_v2.0_s/model.onnx",
    )
    assert detector_spec("org/detectors/yolo/best.onnx").file == "yolo/best.onnx"
    assert detector_spec("hog").kind == "hog" and detector_spec("dlib-hog").kind == "dlib-hog"
    with pytest.raises(ConfigError, match=r"not hog, dlib or dlib-hog, no such \.onnx file"):
        detector_spec("./missing.onnx")
    with pytest.raises(ConfigError, match=r"no model\.onnx in the folder"):
        detector_spec(str(tmp_path))


def test_a_hub_detector_not_in_the_cache_fails_offline_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    spec = detector_spec("deepghs/anime_head_detection/head_detect_v2.0_s")
    with pytest.raises(
        ConfigError, match=r"cannot fetch head_detect_v2.0_s/model.onnx from the Hugging Face"
    ):
        spec.open(Settings())
