"""Which artifact tensor is each Keras layer's output (edgekit.evaluate.layer_match): found by value
in an fp32 artifact, never by name or shape alone, and checked against the converters' own
debuggers (TFLite's QuantizationDebugger, onnxruntime's qdq_loss_debug) on a model with the layers
that fooled the name-and-shape matching (SeparableConv2D, BatchNormalization, PReLU, residual
Add, Concatenate, LayerNormalization)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.evaluate.layer_debuggers import one_op_entries, onnx_debugger_snr, tflite_debugger_snr
from edgekit.evaluate.layer_error import layer_errors
from edgekit.evaluate.layer_match import AGREE_DB, aligned, consumers, correspond, sources
from edgekit.formats import FORMATS

FORMAT_NAMES = ("tflite", "onnx", "openvino")
#: no compared entry may read further below the model output's SNR than this (dB) unless the
#: format's own debugger finds it as low: the matching by name and shape read 20-40 dB below
#: (separable convolutions, PReLU, batch normalizations compared before their offset); right
#: tensors read at most 7 dB below on MobileNetV2 (OpenVINO), 6 on the others
MARGIN = 10.0
#: ours against the debuggers (dB): the same tensors and arithmetic; here the largest
#: differences are 0.3 dB (TFLite) and 0.0 (onnxruntime), on MobileNetV2 0.35 0.7 and 0.6
TOLERANCE = 1.0


# -- the matching rules, on made-up graphs -------------------------------------------------------

def test_a_tensor_in_another_layout_or_shape_still_equals_its_layer():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    value, exact, snr = aligned(np.moveaxis(ref, -1, 1).copy(), ref)  # NCHW inside ONNX and OpenVINO
    assert exact and snr >= AGREE_DB and np.array_equal(value, ref)
    value, exact, snr = aligned(ref.reshape(2, -1), ref)  # the same values flattened
    assert not exact and snr >= AGREE_DB
    assert aligned(ref[:, :2], ref)[0] is None  # fewer values: never
    # a neighbour op (before a bias) is not the layer's output
    assert aligned(ref + 0.5, ref)[2] < AGREE_DB


def _entry(name, inputs=(), op="Op", value=None, quantize=False, graph_input=False):
    return {"name": name, "inputs": list(inputs), "op": op, "quantize": quantize, "graph_input": graph_input,
            "value": np.zeros((1, 4), np.float32) if value is None else value}


def test_twin_tensors_are_found_by_name_or_by_graph_position():
    twin = [_entry("input", graph_input=True),
            _entry("m/conv/Relu", ["input"], "Relu"),
            _entry("Transpose_12", ["m/conv/Relu"], "Transpose"),  # a generated name
            _entry("m/block/Add", ["Transpose_12"], "Add"),
            _entry("m/block/Add#Add_7", ["m/block/Add", "Transpose_12"], "Add"),  # its name repeats
            _entry("Conv2D__7:0", ["m/block/Add#Add_7"], "Conv")]  # tf2onnx's numbering
    entries = [_entry("input", graph_input=True),
               _entry("input/fq", ["input"], "FakeQuantize", quantize=True),
               _entry("m/conv/Relu", ["input/fq"], "Relu"),
               _entry("m/conv/Relu/fq", ["m/conv/Relu"], "FakeQuantize", quantize=True),
               _entry("Transpose_98", ["m/conv/Relu/fq"], "Transpose"),
               _entry("m/block/Add", ["Transpose_98"], "Add"),
               _entry("m/block/Add0", ["m/block/Add", "Transpose_98"], "Add"),
               _entry("Conv2D__51:0", ["m/block/Add0"], "Conv")]
    found = {twin_name: entry["name"] for twin_name, entry in correspond(twin, entries).items()}
    assert found == {"input": "input", "m/conv/Relu": "m/conv/Relu", "Transpose_12": "Transpose_98",
                     "m/block/Add": "m/block/Add", "m/block/Add#Add_7": "m/block/Add0", "Conv2D__7:0": "Conv2D__51:0"}
    # an op of another type at the same place is not the same tensor
    entries[4] = _entry("Transpose_98", ["m/conv/Relu/fq"], "Reshape")
    assert "Transpose_12" not in correspond(twin, entries)


@pytest.mark.parametrize("flavour", ["tf_keras", "keras"])
def test_which_layers_read_which_through_nested_models(flavour):
    keras = pytest.importorskip(flavour)
    from edgekit.evaluate.layer_error import keras_layers

    inputs = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")(inputs)
    b = keras.layers.Dense(3, name="b")(a)
    inner = keras.Model(inputs, keras.layers.Add(name="c")([b, a]), name="inner")
    outer_in = keras.Input((4,))
    x = keras.layers.Dense(4, name="pre")(outer_in)
    model = keras.Model(outer_in, keras.layers.Dense(2, name="head")(inner(x)))
    leaves = keras_layers(model)
    names = [leaf["name"] for leaf in leaves]
    read = {names[i]: [None if p is None else names[p] for p in parents] for i, parents in sources(model, leaves).items()}
    assert read == {"pre": [None], "a": ["pre"], "b": ["a"], "c": ["b", "a"], "head": ["c"]}
    readers = {names[i]: {names[j] for j in js} for i, js in consumers(sources(model, leaves)).items()}
    assert readers["a"] == {"b", "c"} and readers["c"] == {"head"}


# -- real converters, against their own debuggers -------------------------------------------------

def _outside_model():
    """Layers the name-and-shape matching got wrong, in a model not made for edgekit."""
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    layers = keras.layers
    inputs = keras.Input((12, 12, 3))
    # the layers the test names, named here: Keras numbers unnamed ones by what this process made before
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv2d")(inputs)
    x = layers.BatchNormalization(name="batch_normalization")(x)
    x = layers.ReLU()(x)
    y = layers.SeparableConv2D(8, 3, padding="same", name="separable_conv2d")(x)
    y = layers.BatchNormalization(name="batch_normalization_1")(y)
    y = layers.PReLU(shared_axes=[1, 2])(y)
    x = layers.Add()([x, y])
    z = layers.Conv2D(4, 1, name="conv2d_1")(x)
    x = layers.Concatenate()([x, z])
    x = layers.MaxPooling2D()(x)
    x = layers.Reshape((36, 12))(x)
    x = layers.LayerNormalization()(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(5)(x)  # logits: the output SNR is not flattened by a softmax
    model = keras.Model(inputs, outputs, name="outside")
    # trained batch statistics, not the identity ones of a fresh layer
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, _, _ = layer.get_weights()
            n = gamma.size
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.3, n), rng.uniform(0.2, 2, n)])
        if isinstance(layer, layers.PReLU):
            layer.set_weights([rng.uniform(0.05, 0.4, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """The model, its samples, and per format its int8 artifact's record and output SNR."""
    model = _outside_model()
    x = np.random.default_rng(1).uniform(0, 1, (96, 12, 12, 3)).astype(np.float32)
    calibration, samples = x[:64], x[64:]
    folder = tmp_path_factory.mktemp("outside")
    expected = np.asarray(model(samples, training=False))
    out = {"model": model, "calibration": calibration, "samples": samples, "folder": folder}
    for name in FORMAT_NAMES:
        fmt = FORMATS[name]
        path, fp32 = folder / f"int8{fmt.suffix}", folder / f"fp32{fmt.suffix}"
        fmt.load_converter()(model, path, "int8", calibration, {})
        fmt.load_converter()(model, fp32, "fp32", calibration, {})  # the twin, as a build's fp32 row
        record = layer_errors(fmt, model, path, samples, reference=fp32)
        got = fmt.load_runtime()(path, 1, {}).predict(samples)
        out[name] = {"path": path, "fp32": fp32, "record": record, "output_snr_db": _snr(expected, got)}
    return out


def _snr(ref, q) -> float:
    ref, q = np.asarray(ref, np.float64), np.asarray(q, np.float64)
    return 10 * math.log10(np.sum(ref ** 2) / max(np.sum((ref - q) ** 2), 1e-300))


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_layer_is_compared_on_the_tensor_that_equals_it(outside, name):
    record = outside[name]["record"]
    entries = record["layers"]
    layers = [layer.name for layer in outside["model"].layers[1:]]
    grouped = [member for entry in entries for member in entry["group"]]
    # each Keras layer once: alone, in a fused group, or unmatched; most are compared
    assert sorted(grouped + record["unmatched"]) == sorted(layers), record
    assert record["layers_matched"] == len(grouped) >= len(layers) - 2
    # every compared tensor equals its layer's output in the fp32 artifact of the same converter
    assert all(entry["fp32_snr_db"] >= AGREE_DB for entry in entries), entries
    assert all(entry["layer"] == "+".join(entry["group"]) for entry in entries)
    # the convolution, its normalization and activation are one op in every converter: one group
    conv = next(entry for entry in entries if "conv2d" in entry["group"])
    assert conv["group"][:2] == ["conv2d", "batch_normalization"], conv
    # the separable convolution is compared where its output is (TFLite's depthwise half has
    # the same shape and read far below the output before)
    separable = next(entry for entry in entries if "separable_conv2d" in entry["group"])
    assert separable["snr_db"] >= outside[name]["output_snr_db"] - MARGIN, separable


def test_tflite_layers_agree_with_the_quantization_debugger(outside):
    samples, path = outside["samples"], outside["tflite"]["path"]
    debugger = tflite_debugger_snr(outside["model"], outside["calibration"], samples, path)
    record, floor = outside["tflite"]["record"], outside["tflite"]["output_snr_db"] - MARGIN
    # every compared tensor is a quantized op's output
    assert all(entry["tensor"] in debugger for entry in record["layers"]), (record["layers"], sorted(debugger))
    # what an op adds on its own (the Keras layers on the artifact's own inputs), where the entry is
    # one op as the debugger's rows are and where it loses anything measurable
    single = one_op_entries(record, FORMATS["tflite"].load_intermediates_reader()(path, samples[:1]))
    checked = [(entry, debugger[entry["tensor"]]) for entry in single if debugger[entry["tensor"]] < 100]
    assert len(checked) >= 5, (single, debugger)
    for entry, theirs in checked:
        assert abs(entry["local_snr_db"] - theirs) <= TOLERANCE, (entry, theirs)
    # below the model output's SNR by more than the margin only where the debugger says so too
    for entry in record["layers"]:
        assert entry["snr_db"] >= floor or debugger[entry["tensor"]] < floor, (entry, debugger[entry["tensor"]])


def test_onnx_layers_agree_with_qdq_loss_debug(outside):
    debugger = onnx_debugger_snr(outside["onnx"]["fp32"], outside["onnx"]["path"], outside["samples"])
    record, floor = outside["onnx"]["record"], outside["onnx"]["output_snr_db"] - MARGIN
    checked = 0
    for entry in record["layers"]:
        tensor = entry["tensor"].split(";")[-1].removesuffix("_DequantizeLinear_Output")
        theirs = debugger.get(tensor)
        if theirs is not None:
            assert abs(entry["snr_db"] - theirs) <= TOLERANCE, (entry, theirs)
            checked += 1
        assert entry["snr_db"] >= floor or (theirs is not None and theirs < floor), (entry, theirs)
    assert checked >= len(record["layers"]) - 3  # a tensor without QDQ after it is not in its list


def test_openvino_layers_read_no_lower_than_the_model_output_allows(outside):
    """No debugger to ask: an entry further below the output's SNR than the margin must owe it to
    its own FakeQuantize, read in the artifact alone (its float result against the FakeQuantize
    output: NNCF's range for re_lu here clips the channels above 0.55)."""
    record, floor = outside["openvino"]["record"], outside["openvino"]["output_snr_db"] - MARGIN
    for entry in record["layers"]:
        assert entry["snr_db"] >= floor or entry["quantize_snr_db"] < floor, (floor, entry)
