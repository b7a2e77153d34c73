"""The ONNX backend: sessions on real (tiny) ONNX files, providers, threads, input introspection."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from tiny_wd14 import TAGS, build_tagger

from captionary.backends.onnx import (
    CPU,
    ImageInput,
    default_providers,
    image_input,
    inputs,
    load_session,
    outputs,
)
from captionary.errors import ConfigError


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    return build_tagger(tmp_path_factory.mktemp("onnx") / "tagger")


def test_session_runs_on_cpu_with_the_thread_setting(tagger):
    session = load_session(tagger / "model.onnx", threads=1)
    assert session.get_providers() == [CPU]  # no CUDA on this machine
    assert session.get_session_options().intra_op_num_threads == 1
    batch = np.full((2, 448, 448, 3), 255, dtype=np.float32)
    [scores] = session.run(None, {"input_1:0": batch})
    assert scores.shape == (2, len(TAGS)) and ((scores > 0) & (scores < 1)).all()


def test_default_providers_follow_the_build():
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert default_providers() == (["CUDAExecutionProvider", CPU] if has_cuda else [CPU])


def test_signature_introspection(tagger):
    session = load_session(tagger / "model.onnx")
    [spec] = inputs(session)
    assert (spec.name, spec.shape, spec.dtype) == ("input_1:0", (None, 448, 448, 3), "float32")
    [out] = outputs(session)
    assert (out.name, out.shape) == ("predictions_sigmoid", (None, len(TAGS)))
    assert image_input(session) == ImageInput("input_1:0", "NHWC", 448, 448, 3, None, "float32")


def test_fixed_batch_and_channels_first_inputs_are_recognised(tmp_path):
    session = load_session(build_tagger(tmp_path / "b1", batch=1, size=64) / "model.onnx")
    assert image_input(session).batch == 1 and image_input(session).height == 64

    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["out"])],
        "nchw",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, 224, 224])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, 224, 224])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, tmp_path / "nchw.onnx")
    spec = image_input(load_session(tmp_path / "nchw.onnx"))
    assert (spec.layout, spec.channels, spec.height, spec.width) == ("NCHW", 3, 224, 224)


def test_missing_and_corrupt_models_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"ONNX model not found: .*nowhere\.onnx"):
        load_session(tmp_path / "nowhere.onnx")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ConfigError, match=r"cannot load ONNX model .*broken\.onnx"):
        load_session(bad)


def test_unavailable_provider_is_refused(tagger):
    with pytest.raises(ConfigError, match="NoSuchExecutionProvider not available"):
        load_session(tagger / "model.onnx", ["NoSuchExecutionProvider"])


def test_importing_captionary_does_not_import_onnxruntime():
    code = "import sys, captionary; print('onnxruntime' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
