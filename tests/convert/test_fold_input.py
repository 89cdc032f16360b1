"""The input scaling folded into the first layer (edgekit.convert.fold_input): the same function,
no op of its own in any artifact, and a clear record where nothing could be folded."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.convert.fold_input import fold_input

RNG = np.random.default_rng(0)
IMAGES = RNG.random((16, 12, 12, 3), dtype=np.float32)


def _zoo_like(keras):
    """[0, 1] -> [-1, 1] as the zoo's frozen 1x1 depthwise conv, then a 3x3 stride-2 ``same``
    convolution without bias and batch normalization (MobileNetV2's stem, 12x12)."""
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.DepthwiseConv2D(1, name="scale", depthwise_initializer=keras.initializers.Constant(2.0),
                                     bias_initializer=keras.initializers.Constant(-1.0))(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="zoo_like")


def test_the_zoo_scaling_folds_exactly_and_no_artifact_runs_it(tmp_path):
    import tf_keras as keras

    from edgekit.convert import tflite
    from edgekit.runtimes.litert import open_session

    keras.utils.set_random_seed(1)
    model = _zoo_like(keras)
    folded, record = fold_input(model, IMAGES, int8=True)
    assert record["folded"] and record["layers"] == ["scale"] and record["into"] == "stem"
    assert record["scale"] == 2.0 and record["offset"] == -1.0 and record["raw_range"][0] >= 0
    # stem pads its [-1, 1] input with zeros (raw 0.5): the shift stays as one scalar add in front
    assert record["shift"]["value"] == 0.5 and "pads" in record["shift"]["why"]
    np.testing.assert_allclose(folded(IMAGES).numpy(), model(IMAGES).numpy(), rtol=1e-5, atol=1e-6)
    path = tmp_path / "int8.tflite"
    tflite.convert(folded, path, "int8", IMAGES)
    session = open_session(path)
    ops = [op["op_name"] for op in session.interpreter._get_ops_details()]
    assert "DEPTHWISE_CONV_2D" not in ops and ops.count("ADD") == 1, ops
    scale, zero = session.input["quantization"]  # the int8 input quantizes the raw [0, 1] images
    assert (127 - zero) * scale == pytest.approx(1.0, abs=0.02) and (-128 - zero) * scale == pytest.approx(0, abs=0.02)
    np.testing.assert_allclose(session.predict(IMAGES), model(IMAGES).numpy(), atol=0.1)


def test_a_keras3_rescaling_before_a_dense_folds_into_its_bias():
    import keras

    model = keras.Sequential([keras.Input((5,)), keras.layers.Rescaling(1 / 255.0, offset=-0.5),
                              keras.layers.Dense(2, name="out")])
    x = RNG.uniform(0, 255, (8, 5)).astype(np.float32)
    folded, record = fold_input(model, x)
    assert record["folded"] and record["into"] == "out" and "shift" not in record  # a dense layer adds no padding
    assert [type(layer).__name__ for layer in folded.layers] == ["Activation", "Dense"]
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x)), rtol=1e-4, atol=1e-4)
    # the input contract: the raw range the artifact takes, and the scaling step (as the data
    # side found it in the model) marked as folded into the dense layer
    from edgekit.models.input_preprocessing import detect
    from edgekit.report.contract import row_contract

    row = {"id": "onnx-fp32@cpu", "path": "artifacts/onnx-fp32.onnx", "format": "onnx", "precision": "fp32",
           "target": "cpu", "settings": {"input_fold": record},
           "io": {"inputs": [{"name": "x", "dtype": "float32", "shape": [1, 5]}], "outputs": []}}
    data = {"source": "npz", "input_preprocessing": {"inputs": [found.to_dict() for found in detect(model)]}}
    [tensor] = row_contract(row, {"data": data})["inputs"]
    assert [tensor["raw_range"]["min"], tensor["raw_range"]["max"]] == [float(x.min()), float(x.max())]
    [step] = [step for step in tensor["preprocessing"] if step["step"] == "model layers"]
    assert step["folded_into"] == "out" and step["inside_artifact"] and step["layers"]


def test_a_scaling_only_the_fold_found_is_a_step_of_the_contract_and_of_the_table():
    """The zoo's MobileNetV2 scales [0, 1] -> [-1, 1] with layers the data side's reader does not
    name (a frozen depthwise convolution): the contract gains the step from the fold's record alone,
    and report.md's contract table shows it (it once failed the whole build there)."""
    from edgekit.report.contract import row_contract, tensor_cells

    record = {"folded": True, "layers": ["scale_to_minus_one_to_one"], "into": "Conv1", "scale": [2.0], "offset": [-1.0],
              "raw_range": [0.0, 1.0], "shift": {"value": 1.0}}
    row = {"id": "tflite-int8@cpu", "path": "artifacts/tflite-int8.tflite", "format": "tflite", "precision": "int8",
           "target": "cpu", "settings": {"input_fold": record},
           "io": {"inputs": [{"name": "x", "dtype": "int8", "shape": [1, 96, 96, 3]}], "outputs": []}}
    contract = row_contract(row, {"data": {"source": "gratings96"}})
    [tensor] = contract["inputs"]
    [step] = [step for step in tensor["preprocessing"] if step["step"] == "model layers"]
    assert step["layers"] == [{"layer": "scale_to_minus_one_to_one", "class": None}] and step["folded_into"] == "Conv1"
    cells = tensor_cells(row["id"], tensor, "input", contract)
    assert "*model layers scale_to_minus_one_to_one: no op of its own: folded into Conv1's weights" in cells[6]


def test_per_channel_normalization_before_a_valid_convolution_leaves_no_op():
    import tf_keras as keras

    inputs = keras.Input((12, 12, 3))
    norm = keras.layers.Normalization(mean=[0.2, 0.5, 0.7], variance=[0.01, 0.04, 0.09], name="norm")
    x = keras.layers.Conv2D(2, 3, padding="valid", name="conv")(norm(inputs))
    model = keras.Model(inputs, x)
    folded, record = fold_input(model, IMAGES)
    assert record["folded"] and record["offset"] != 0 and "shift" not in record
    np.testing.assert_allclose(folded(IMAGES).numpy(), model(IMAGES).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", ["two readers", "no scaling", "int8 ranges apart", "subclassed"])
def test_what_cannot_fold_stays_as_it_is_and_says_why(case):
    import tf_keras as keras

    inputs = keras.Input((12, 12, 3))
    scaled = keras.layers.Rescaling(2.0, -1.0, name="scale")(inputs)
    calibration = IMAGES
    if case == "two readers":
        model = keras.Model(inputs, keras.layers.Add()([keras.layers.Conv2D(3, 1)(scaled), scaled]))
        expected = "feeds more than one layer"
    elif case == "no scaling":
        model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
        expected = "no input scaling"
    elif case == "int8 ranges apart":  # one channel in [0, 1000], two in [0, 1]: one int8 scale fits none
        model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(scaled))
        calibration = IMAGES * np.array([1000.0, 1.0, 1.0], np.float32)
        expected = "ranges"
    else:
        class Scaled(keras.Model):
            def call(self, x):
                return x * 2.0 - 1.0

        model = Scaled()
        model(IMAGES[:1])
        expected = "subclassed model"
    same, record = fold_input(model, calibration, int8=True)
    assert same is model and record["folded"] is False and expected in record["reason"], record
