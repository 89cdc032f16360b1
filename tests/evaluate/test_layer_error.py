"""Per-layer quantization error (edgekit.evaluate.layer_error) on real tiny models in every
int8 format: a layer whose calibration range is ruined on purpose must come first."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.evaluate.layer_error import layer_errors, rank_groups, rank_layers
from edgekit.formats import FORMATS

FORMAT_NAMES = ("tflite", "onnx", "openvino")


def _data(seed: int = 0):
    """Normal samples: features 0-6 in [0, 5], feature 7 near 0. The calibration set adds
    outliers whose feature 7 is 5: only the layer "bad" (which multiplies it by 1000, and which
    the head ignores) sees its range blown up 500 times."""
    rng = np.random.default_rng(seed)
    normal = np.concatenate([rng.uniform(0, 5, (200, 7)), rng.uniform(0, 0.01, (200, 1))], axis=1).astype(np.float32)
    outliers = normal[:8].copy()
    outliers[:, 7] = 5.0
    calibration = np.concatenate([normal[8:64], outliers])
    return calibration, normal[100:164]


def _weights(rng):
    first = (np.eye(8, dtype=np.float32), np.zeros(8, np.float32))
    bad_kernel = np.eye(8, dtype=np.float32)
    bad_kernel[7, 7] = 1000.0
    bad = (bad_kernel, np.zeros(8, np.float32))
    head_kernel = rng.normal(0, 1, (8, 4)).astype(np.float32)
    head_kernel[7] = 0.0  # the head ignores the blown-up unit: its own range stays sane
    head = (head_kernel, np.zeros(4, np.float32))
    return first, bad, head


def _tf_keras_sequential():
    import tf_keras as keras

    model = keras.Sequential([
        keras.layers.Input((8,)),
        keras.layers.Dense(8, activation="relu", name="first"),
        keras.layers.Dense(8, activation="relu", name="bad"),
        keras.layers.Dense(4, activation="softmax", name="head"),
    ])
    for layer, (kernel, bias) in zip(model.layers, _weights(np.random.default_rng(1))):
        layer.set_weights([kernel, bias])
    return model


def _keras3_functional():
    import keras

    inputs = keras.Input((8,), name="features")
    x = keras.layers.Dense(8, activation="relu", name="first")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="bad")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="functional3")
    for name, (kernel, bias) in zip(("first", "bad", "head"), _weights(np.random.default_rng(1))):
        model.get_layer(name).set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module", params=["tf_keras_sequential", "keras3_functional"])
def converted(request, tmp_path_factory):
    """(model, evaluation samples, {format: int8 artifact}, {format: its record}) for one of the
    two Kerases; each format's fp32 artifact is the twin the layers are found in, as in a build."""
    model = _tf_keras_sequential() if request.param == "tf_keras_sequential" else _keras3_functional()
    calibration, samples = _data()
    folder = tmp_path_factory.mktemp(request.param)
    artifacts, records = {}, {}
    for name in FORMAT_NAMES:
        fmt = FORMATS[name]
        path, twin = folder / f"int8{fmt.suffix}", folder / f"fp32{fmt.suffix}"
        fmt.load_converter()(model, path, "int8", calibration, {})
        fmt.load_converter()(model, twin, "fp32", calibration, {})
        artifacts[name] = path
        records[name] = layer_errors(fmt, model, path, samples, reference=twin)
    return model, samples, artifacts, records


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_the_layer_with_a_ruined_range_comes_first(converted, name):
    model, samples, artifacts, records = converted
    record = records[name]
    layers = {entry["layer"]: entry for entry in record["layers"]}
    assert rank_layers(record)[0] == "bad", record
    # names are the Keras layer names, each once
    assert set(layers) <= {"first", "bad", "head"} and len(layers) == len(record["layers"])
    assert record["layers_total"] == 3 and record["layers_matched"] == len(layers) >= 2
    assert record["samples"] == len(samples) and record["metric"] == "snr_db" and record["how"]
    # the well-calibrated layer is close to the float model, the ruined one is not
    assert layers["first"]["snr_db"] > 20, layers
    assert layers["bad"]["snr_db"] < 10 < layers["first"]["snr_db"] - 10, layers
    assert 0 <= layers["bad"]["nrmse"] and layers["bad"]["nrmse"] > layers["first"]["nrmse"]
    # the head reads the ruined tensor: its output is bad too, but it adds little of its own
    if "head" in layers:
        assert layers["head"]["added_db"] > layers["bad"]["added_db"], layers
    json.dumps(record, allow_nan=False)  # results.json must stay strict JSON


def test_the_three_formats_agree_on_the_well_calibrated_layer(converted):
    records = converted[3]
    first = [{e["layer"]: e for e in records[name]["layers"]}["first"]["snr_db"] for name in FORMAT_NAMES]
    # the same measure in every format: a well-calibrated int8 layer is well above 20 dB in each
    # (NNCF's ranges differ from the min-max ones of TFLite and onnxruntime, so not equal)
    assert min(first) > 20, first


def test_a_stale_fp32_artifact_is_not_trusted(converted, tiny_artifacts):
    """The build's fp32 artifact of another model (a rerun into the same folder after a failed
    fp32 conversion) equals none of the layers: a twin is converted instead."""
    model, samples, artifacts, records = converted
    assert records["tflite"]["fp32_artifact"] == "fp32.tflite"  # the build's own, where it fits
    record = layer_errors(FORMATS["tflite"], model, artifacts["tflite"], samples, reference=tiny_artifacts["tflite", "fp32"])
    assert record["fp32_artifact"] == "converted"
    assert [e["layer"] for e in record["layers"]] == [e["layer"] for e in records["tflite"]["layers"]]


def test_a_format_without_a_reader_is_refused(converted):
    import dataclasses

    model, samples, artifacts, _ = converted
    fmt = dataclasses.replace(FORMATS["tflite"], intermediates="")
    with pytest.raises(ValueError, match="intermediate"):
        layer_errors(fmt, model, artifacts["tflite"], samples)


def test_rank_layers_of_an_error_record_is_empty():
    assert rank_layers({"error": "no validation samples"}) == []
    assert rank_layers({"layers": [{"layer": "a", "added_db": 30.0, "snr_db": 30.0},
                                   {"layer": "b", "added_db": 10.0, "snr_db": 40.0}]}) == ["b", "a"]


def test_a_layer_fused_into_another_is_compared_as_a_group(tmp_path):
    """Dense then a separate ReLU layer: TFLite fuses both into one FULLY_CONNECTED whose tensor
    is the ReLU's output; the Dense has no tensor of its own: the two are compared once, as a
    group named after both, at the ReLU's output."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(16, name="linear"),
                              keras.layers.ReLU(name="rectify"), keras.layers.Dense(4, name="head")])
    calibration, samples = _data()
    path = tmp_path / "fused.tflite"
    FORMATS["tflite"].load_converter()(model, path, "int8", calibration, {})
    record = layer_errors(FORMATS["tflite"], model, path, samples)
    layers = {entry["layer"]: entry for entry in record["layers"]}
    assert set(layers) == {"linear+rectify", "head"} and record["unmatched"] == []
    assert layers["linear+rectify"]["group"] == ["linear", "rectify"]
    assert record["layers_matched"] == record["layers_total"] == 3
    # what was matched is the right tensor: a ReLU output at int8, close to the float one
    assert layers["linear+rectify"]["snr_db"] > 25 and layers["linear+rectify"]["fp32_snr_db"] > 50
    # the int8-mixed search keeps the group float at once
    assert ["linear", "rectify"] in rank_groups(record) and set(rank_layers(record)) == {"linear", "rectify", "head"}


def test_qat_model_layers_are_named_as_keras_names_them(tmp_path):
    """A QAT model's layers are its quantize wrappers (quant_dense...): the artifact's tensors
    carry those names, and its int8 tensors match the fake-quantized outputs closely."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.layers.Input((8,)), keras.layers.Dense(16, activation="relu", name="hidden"),
                             keras.layers.Dense(4, activation="softmax", name="head")])
    model = tfmot.quantization.keras.quantize_model(base)
    calibration, samples = _data()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(calibration, np.arange(len(calibration)) % 4, epochs=2, verbose=0)  # ranges settle
    for name in FORMAT_NAMES:
        fmt = FORMATS[name]
        path = tmp_path / f"qat{fmt.suffix}"
        fmt.load_converter()(model, path, "int8", calibration, {}, prequantized=True)
        record = layer_errors(fmt, model, path, samples)
        layers = {entry["layer"]: entry for entry in record["layers"]}
        assert "quant_hidden" in layers, (name, record)
        assert set(layers) <= {layer.name for layer in model.layers}
        assert layers["quant_hidden"]["snr_db"] > 25, (name, layers)


def test_a_keras3_model_behind_the_embedded_normalization(tmp_path):
    """The converter's model where normalization is embedded: a wrapper around the trained model
    (nested), whose layers are found inside it."""
    from edgekit.convert.preprocess import with_normalization
    from edgekit.data import Normalization

    inner = _keras3_functional()
    calibration, samples = _data()
    shift, scale = calibration.mean(axis=0), calibration.std(axis=0) + 1e-3
    norm = Normalization.from_dict({"kind": "standard", "per": "feature", "shape": [8],
                                    "shift": shift.tolist(), "scale": scale.tolist()})
    wrapped = with_normalization(inner, norm)
    raw = norm.invert(samples)  # raw features whose normalized values are the samples
    path = tmp_path / "wrapped.onnx"
    FORMATS["onnx"].load_converter()(wrapped, path, "int8", norm.invert(calibration), {})
    record = layer_errors(FORMATS["onnx"], wrapped, path, raw)
    paths = {entry["layer"]: entry["path"] for entry in record["layers"]}
    compared = {name for entry in record["layers"] for name in entry["group"]}
    assert {"first", "bad", "head"} <= compared and record["unmatched"] == [], record
    assert paths["bad"].endswith("/bad") and paths["bad"] != "bad"  # found inside the nested model
    assert rank_layers(record)[0] == "bad"


def test_evaluation_records_a_failure_without_failing_the_row(tmp_path):
    from types import SimpleNamespace

    from edgekit.evaluate.stage import measure_layer_error
    from edgekit.variant import Variant

    lines = []
    ctx = SimpleNamespace(data=SimpleNamespace(x_val=np.zeros((4, 8), np.float32), normalization=None, embedded=False,
                                               artifact_inputs=lambda x: x), log=lines.append)
    variant = Variant(format="tflite", precision="int8", path=tmp_path / "missing.tflite")
    record = measure_layer_error(variant, FORMATS["tflite"], _tf_keras_sequential(), ctx)
    assert set(record) == {"error"} and record["error"] and "\n" not in record["error"]
    assert variant.status == "ok" and any("no per-layer error" in line for line in lines)
    # rows that are not int8 get none, and ask for nothing
    assert measure_layer_error(Variant(format="tflite", precision="fp32"), FORMATS["tflite"], None, ctx) == {}


def test_every_int8_row_of_a_build_carries_its_worst_layers(tiny_run):
    rows = [row for row in tiny_run.results["rows"] if row["status"] == "ok"]
    int8 = [row for row in rows if row["precision"] == "int8"]
    assert int8, [row["id"] for row in rows]
    for row in int8:
        record = row["layer_error"]
        assert record["metric"] == "snr_db" and record["layers_measured"] >= 2, row["id"]
        assert 1 <= len(record["worst"]) <= 5 and all(isinstance(e["snr_db"], float) for e in record["worst"])
        assert record["samples"] > 0 and record["seconds"] < 30
    assert all("layer_error" not in row for row in rows if row["precision"] == "fp32")
    assert (tiny_run.dir / "layer_errors").is_dir()


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_a_cnn_matches_its_layers_across_layouts(tiny_model, tiny_artifacts, digits, name):
    """A conv net (ONNX and OpenVINO keep NCHW inside): every layer that is matched is the right
    tensor (a well-calibrated int8 CNN is well above 15 dB everywhere), none is guessed."""
    x, _ = digits
    fmt = FORMATS[name]
    record = layer_errors(fmt, tiny_model, tiny_artifacts[name, "int8"], x[1400:1464], reference=tiny_artifacts[name, "fp32"])
    layers = {entry["layer"]: entry for entry in record["layers"]}
    assert layers and all(entry["snr_db"] > 15 and entry["fp32_snr_db"] > 50 for entry in layers.values()), record
    assert record["layers_matched"] + len(record["unmatched"]) == record["layers_total"] == len(tiny_model.layers)
    assert record["unmatched"] == []
    # OpenVINO names its ops Transpose_123 after its transpose sinking: found by value and position
    conv = next(entry for entry in layers.values() if entry["group"][0] == tiny_model.layers[0].name)
    assert conv["shape"] == [8, 8, 4]
    assert not conv["tensor"].endswith(("/Convolution", "/Conv2D")), conv
    assert rank_layers(record)[0] in {name for entry in layers.values() for name in entry["group"]}
