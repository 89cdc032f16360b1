"""quantize.keep_float: the named Keras layers stay float in every int8 artifact, read back from
the artifact itself, through each format's own mechanism; an unknown name stops the build.

The model is a tiny MLP behind the embedded normalization (the build's usual export, whose node
names carry one more outer model name: ``tiny/tiny/middle/MatMul``).
"""

from __future__ import annotations

import numpy as np
import pytest

LAYERS = ("first", "middle", "last")


@pytest.fixture(scope="module")
def wrapped():
    import tf_keras as keras

    from edgekit.convert.preprocess import with_normalization
    from edgekit.data import Normalization

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu", name="first")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="middle")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="last")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    rng = np.random.default_rng(0)
    normalization = Normalization("standard", "feature", rng.normal(size=6).astype(np.float32),
                                  rng.uniform(0.5, 2, size=6).astype(np.float32))
    calibration = rng.normal(size=(64, 6)).astype(np.float32)
    return with_normalization(model, normalization), calibration


def _tflite_float_ops(path) -> dict[str, bool]:
    """FULLY_CONNECTED ops by layer: True where the weights are float32."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] == "FULLY_CONNECTED":
            name = details[op["outputs"][0]]["name"]
            layer = next(layer for layer in LAYERS if f"/{layer}/" in name)
            found[layer] = details[op["inputs"][1]]["dtype"] == np.float32
    return found


def _onnx_float_ops(path) -> dict[str, bool]:
    """MatMul / Gemm nodes by layer: True where the weight is a float initializer (no DequantizeLinear)."""
    import onnx

    graph = onnx.load(str(path)).graph
    floats = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    found = {}
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            layer = next(layer for layer in LAYERS if f"/{layer}/" in node.name)
            found[layer] = node.input[1] in floats
    return found


def _openvino_float_ops(path) -> dict[str, bool]:
    """MatMul ops by layer: True where neither a FakeQuantize (activations) nor NNCF's int8 weight
    decompression (``.../fq_weights_1``: Multiply of a Convert of an int8 constant) feeds it."""
    import openvino as ov

    def fed_by_fake_quantize(node) -> bool:
        return any(value.get_node().get_type_name() == "FakeQuantize" or "/fq_weights" in value.get_node().get_friendly_name()
                   for value in node.input_values())

    found = {}
    for op in ov.Core().read_model(str(path)).get_ops():
        if op.get_type_name() == "MatMul":
            layer = next(layer for layer in LAYERS if f"/{layer}/" in op.get_friendly_name())
            found[layer] = not fed_by_fake_quantize(op)
    return found


READERS = {"tflite": (".tflite", _tflite_float_ops), "onnx": (".onnx", _onnx_float_ops),
           "openvino": (".xml", _openvino_float_ops)}


@pytest.mark.parametrize("fmt", list(READERS))
def test_keep_float_keeps_the_layer_float(fmt, wrapped, tmp_path):
    import importlib

    model, calibration = wrapped
    converter = importlib.import_module(f"edgekit.convert.{fmt}")
    suffix, read = READERS[fmt]
    plain, kept = tmp_path / f"plain{suffix}", tmp_path / f"kept{suffix}"
    plain_settings = converter.convert(model, plain, "int8", calibration)
    settings = converter.convert(model, kept, "int8", calibration, keep_float=("middle",))

    # Plain int8 quantizes every Dense (TFLite but the first, which the embedded normalization
    # folds into and which stays float with it); keep_float makes "middle" float, nothing else.
    before = read(plain)
    assert before == {"first": fmt == "tflite", "middle": False, "last": False}
    assert read(kept) == {**before, "middle": True}
    assert settings["kept_float"] == ["middle"] and settings["float_layers"] == 1
    assert "not_float" not in settings and "kept_float" not in plain_settings
    # The converter's own reader agrees with the independent one above.
    after = read(kept)
    assert converter.float_layers(kept, list(LAYERS), ("tiny",)) == [layer for layer in LAYERS if after[layer]]


@pytest.mark.parametrize("fmt", list(READERS))
def test_keep_float_finds_a_keras3_layer_under_its_traced_scope(fmt, tmp_path):
    """Keras 3 traces a layer ``hidden`` as ``functional_1/hidden_1/...``: keep_float still finds it."""
    import importlib

    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))
    converter = importlib.import_module(f"edgekit.convert.{fmt}")
    suffix, _ = READERS[fmt]
    path = tmp_path / f"k3{suffix}"
    calibration = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    settings = converter.convert(model, path, "int8", calibration, keep_float=("hidden",))
    assert settings["kept_float"] == ["hidden"] and settings["float_layers"] == 1, settings
    floating = converter.layer_float(path, ["hidden", "logits"], (model.name,))
    # (TFLite names the graph's last op after the signature's output: no layer to read back there)
    assert floating["hidden"] is True and floating.get("logits", False) is False


def test_keep_float_is_not_applied_to_qat_ranges(wrapped, tmp_path):
    """A prequantized model keeps its own ranges: the row says keep_float was not applied."""
    from edgekit.convert import onnx as onnx_converter

    model, calibration = wrapped
    settings = onnx_converter.convert(model, tmp_path / "q.onnx", "int8", calibration, prequantized=True,
                                      keep_float=("middle",))
    assert settings["keep_float"].startswith("not applied")
    assert "float_layers" not in settings


def test_node_names_map_to_keras_layers():
    from edgekit.convert import node_layer

    layers, outer = ["conv2d", "dense", "dense_1"], ("lenet",)
    assert node_layer("lenet/conv2d/Relu;lenet/conv2d/BiasAdd;lenet/conv2d/Conv2D", layers, outer) == "conv2d"
    assert node_layer("lenet/lenet/dense_1/MatMul", layers, outer) == "dense_1"  # behind the normalization
    assert node_layer("NumericVerify/lenet/lenet/dense/MatMul:9", layers, outer) == "dense"
    assert node_layer("lenet/dense_1/Relu:0_QuantizeLinear", layers, outer) == "dense_1"
    assert node_layer("lenet/normalize_shift/add", layers, outer) is None
    assert node_layer("Transpose_2453", layers, outer) is None


def test_unknown_layer_name_stops_the_build_before_any_conversion(write_recipe):
    from click.testing import CliRunner

    from edgekit.cli import cli

    recipe = write_recipe("""
        name: keepf
        seed: 0
        data: {source: digits}
        model: {arch: mlp, params: {hidden: [16, 16]}}
        train: {epochs: 1}
        quantize:
          precisions: [fp32, int8]
          calibration_samples: 16
          keep_float: [dense, dnese_1]
        export: {formats: [tflite]}
        benchmark: {warmup: 1, runs: 2, inputs: 2, profile: false}
    """)
    _fresh_layer_names()
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(recipe.parent / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "keep_float" in line]
    assert len(lines) == 1, result.output
    assert 'quantize.keep_float[1]: the model has no layer "dnese_1" (did you mean "dense_1"?)' in lines[0]
    assert lines[0].endswith("its layers: flatten, dense, dense_1, output")
    assert "[convert]" not in result.output


def test_a_build_records_the_float_layers_of_every_int8_row(write_recipe):
    import json

    from click.testing import CliRunner

    from edgekit.cli import cli

    recipe = write_recipe("""
        name: keepf_ok
        seed: 0
        data: {source: digits}
        model: {arch: mlp, params: {hidden: [16, 16]}}
        train: {epochs: 1}
        quantize:
          precisions: [fp32, int8]
          calibration_samples: 16
          keep_float: [dense_1]
        export: {formats: [tflite, onnx]}
        benchmark: {warmup: 1, runs: 2, inputs: 2, profile: false}
    """)
    run = recipe.parent / "run"
    _fresh_layer_names()
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run)])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads((run / "results.json").read_text())["rows"]}
    for fmt in ("tflite", "onnx"):
        settings = rows[f"{fmt}-int8@cpu"]["settings"]
        assert settings["kept_float"] == ["dense_1"] and settings["float_layers"] == 1, settings
        assert "kept_float" not in rows[f"{fmt}-fp32@cpu"]["settings"]


def _fresh_layer_names():
    """Zoo models take Keras' automatic layer names (dense, dense_1, ...), numbered per process:
    reset the counters, as a fresh `edgekit build` process starts (other tests built models)."""
    import tf_keras

    tf_keras.backend.clear_session()


@pytest.mark.parametrize("fmt", list(READERS))
def test_keep_float_finds_convolutions_behind_a_folded_batch_norm(fmt, tmp_path):
    """OpenVINO's TensorFlow frontend names the convolutions it rewrites from NHWC
    ``Convolution_47``: the converter names them after the Keras layer whose kernel they hold
    (scaled per channel where a batch normalization was folded in)."""
    import importlib

    import tf_keras as keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="norm_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.Flatten(name="flat")(x))
    model = keras.Model(inputs, outputs, name="cnn")
    # a normalization that is not the identity, so that folding it changes the kernel
    norm = model.get_layer("norm_a")
    norm.set_weights([np.linspace(0.5, 2, 4), np.zeros(4), np.linspace(-1, 1, 4), np.linspace(0.5, 3, 4)])
    calibration = np.random.default_rng(0).normal(size=(32, 8, 8, 2)).astype(np.float32)
    converter = importlib.import_module(f"edgekit.convert.{fmt}")
    suffix = READERS[fmt][0]
    plain, kept = tmp_path / f"plain{suffix}", tmp_path / f"kept{suffix}"
    converter.convert(model, plain, "int8", calibration)
    settings = converter.convert(model, kept, "int8", calibration, keep_float=("conv_b",))
    assert settings["float_layers"] == 1 and "not_float" not in settings
    layers = ["conv_a", "conv_b", "head"]
    assert converter.layer_float(plain, layers, ("cnn",)) == {"conv_a": False, "conv_b": False, "head": False}
    assert converter.layer_float(kept, layers, ("cnn",)) == {"conv_a": False, "conv_b": True, "head": False}
    if fmt == "openvino":  # independent of names: one convolution less reads int8
        assert _quantized_convolutions(plain) == 2 and _quantized_convolutions(kept) == 1


def _quantized_convolutions(path) -> int:
    import openvino as ov

    def quantized(node, depth=0) -> bool:
        kind = node.get_type_name()
        if kind == "FakeQuantize" or (kind == "Constant" and node.get_element_type().get_type_name() in ("i8", "u8")):
            return True
        passes = depth == 0 or kind in ("Convert", "Multiply", "Subtract", "Reshape")
        return depth < 3 and passes and any(quantized(value.get_node(), depth + 1) for value in node.input_values())

    return sum(quantized(op) for op in ov.Core().read_model(str(path)).get_ops() if op.get_type_name() == "Convolution")


def test_a_cached_model_file_lists_the_same_layer_names(wrapped, tmp_path):
    """A rebuild from the cache checks keep_float against the .keras file's config, without
    loading the model: the names must be the loaded model's."""
    from edgekit.convert import keras_layer_names
    from edgekit.convert.stage import _layer_names_in_file

    model, _ = wrapped  # a nested model behind the normalization layers
    path = tmp_path / "model.keras"
    model.save(path)
    names = _layer_names_in_file(path)
    assert names == keras_layer_names(model)
    assert names == ["normalize_shift", "normalize_scale", "tiny", "first", "middle", "last"]
