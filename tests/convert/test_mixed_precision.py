"""int8-mixed: the fewest layers kept float that bring the validation metric within max_drop.

A tiny MLP (first -> middle -> last) is trained on three Gaussian blobs, then broken for int8 on
purpose: one unit of ``first`` is made dead (zero weights, zero bias: it always outputs 0) and
``middle`` gets a weight of 200 on that unit for every output. In float the huge weights multiply
an exact 0 and change nothing; in int8 they set the scale of middle's kernel, which rounds every
real weight of it to 0 (per tensor and per channel alike). Keeping ``middle`` float is enough;
nothing else is needed. The same model without the sabotage quantizes fine: int8-mixed keeps no
layer float and is the plain int8 artifact.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.formats import FORMATS

BUDGET = 0.05
FORMAT_NAMES = ("tflite", "onnx", "openvino")


def _blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(3, 4))
    y = rng.integers(0, 3, 1200)
    x = (centres[y] + rng.normal(size=(1200, 4))).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def models():
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    x, y = _blobs()
    inputs = keras.Input((4,))
    h = keras.layers.Dense(12, activation="relu", name="first")(inputs)
    h = keras.layers.Dense(12, activation="relu", name="middle")(h)
    outputs = keras.layers.Dense(3, activation="softmax", name="last")(h)
    good = keras.Model(inputs, outputs, name="tiny")
    good.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    good.fit(x[:800], y[:800], epochs=15, batch_size=32, verbose=0)
    bad = keras.models.clone_model(good)
    bad.set_weights(good.get_weights())
    kernel, bias = bad.get_layer("first").get_weights()
    kernel[:, 0], bias[0] = 0.0, 0.0  # unit 0 of first: always exactly 0
    bad.get_layer("first").set_weights([kernel, bias])
    kernel, bias = bad.get_layer("middle").get_weights()
    kernel[0, :] = 200.0  # harmless in float (times 0), fatal for middle's int8 kernel scale
    bad.get_layer("middle").set_weights([kernel, bias])
    data = SimpleNamespace(x_val=x[800:], y_val=y[800:], artifact_inputs=lambda v: v)
    return good, bad, x[:256], data


def _mixed(fmt, model, calibration, data, folder, budget=BUDGET):
    from edgekit.convert.mixed import build_mixed

    path = folder / f"mixed{FORMATS[fmt].suffix}"
    settings = build_mixed(FORMATS[fmt], model, path, calibration, {}, max_drop=budget, data=data,
                           task="classification", log=lambda line: None)
    return path, settings


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_the_broken_layer_alone_stays_float(fmt, models, tmp_path):
    import importlib

    _, bad, calibration, data = models
    path, settings = _mixed(fmt, bad, calibration, data, tmp_path)
    mixed = settings["mixed"]
    assert mixed["int8_drop"] > 0.2  # the premise: plain int8 is broken
    assert mixed["met"] is True and mixed["drop"] <= BUDGET
    assert mixed["kept_float"] == ["middle"] and settings["kept_float"] == ["middle"] and settings["float_layers"] == 1
    assert mixed["budget"] == BUDGET and mixed["metric"] == "accuracy" and mixed["conversions"] == len(mixed["trials"])
    assert mixed["trials"][0]["float"] == [] and mixed["trials"][0]["drop"] == mixed["int8_drop"]
    # The artifact written is the one chosen: middle computes in float there, the others in int8.
    converter = importlib.import_module(FORMATS[fmt].converter_module)
    assert converter.layer_float(path, ["first", "middle", "last"], ("tiny",)) == {"first": False, "middle": True, "last": False}
    # And its accuracy on the validation split is what the settings say.
    session = FORMATS[fmt].load_runtime()(path, 1, {})
    accuracy = float(np.mean(session.predict(data.x_val).argmax(-1) == data.y_val))
    assert accuracy == pytest.approx(mixed["value"], abs=1e-6)
    if fmt == "openvino":
        assert mixed["method"] == "nncf accuracy control"
    else:
        assert mixed["method"].startswith("greedy by per-layer error") and "middle" in mixed["order"]
        assert mixed["order_from"].startswith("per-layer quantization error")


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_int8_mixed_is_int8_where_int8_holds(fmt, models, tmp_path):
    good, _, calibration, data = models
    path, settings = _mixed(fmt, good, calibration, data, tmp_path)
    assert settings["mixed"]["method"] == "plain int8 holds" and settings["mixed"]["kept_float"] == []
    assert settings["float_layers"] == 0 and len(settings["mixed"]["trials"]) == 1
    plain = tmp_path / f"plain{FORMATS[fmt].suffix}"
    FORMATS[fmt].load_converter()(good, plain, "int8", calibration, {})
    if fmt == "tflite":  # the same artifact, byte for byte
        assert plain.read_bytes() == path.read_bytes()
    elif fmt == "onnx":  # the same graph and weights (tf2onnx numbers the nodes it adds per process)
        assert _onnx_content(plain) == _onnx_content(path)
    else:  # the same weights (the .xml carries NNCF's own rt_info)
        assert plain.with_suffix(".bin").read_bytes() == path.with_suffix(".bin").read_bytes()


def _onnx_content(path):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    return ([node.op_type for node in graph.node],
            sorted(numpy_helper.to_array(init).tobytes() for init in graph.initializer))


def test_an_unreachable_budget_keeps_the_best_and_says_why(models, tmp_path):
    """A budget below what even all-float reaches (a drop under -1: better than perfect)."""
    _, bad, calibration, data = models
    path, settings = _mixed("tflite", bad, calibration, data, tmp_path, budget=1e-9)
    mixed = settings["mixed"]
    if mixed["met"]:  # int8 with middle float matched fp32 exactly on this split: nothing to show
        pytest.skip("every trial matched fp32 exactly")
    assert "not met even with every quantized layer" in mixed["reason"]
    assert path.exists() and mixed["drop"] == min(t["drop"] for t in mixed["trials"])


def test_max_drop_adds_an_int8_mixed_row_after_int8_for_the_base_model(write_recipe):
    from edgekit.convert.stage import Exporter
    from edgekit.recipe.schema import load_recipe

    recipe = load_recipe(write_recipe("""
        name: mixed
        data: {source: digits}
        model: {arch: mlp}
        quantize: {precisions: [fp32, int8], max_drop: 0.01}
        compress:
          - prune: {sparsity: 0.5, epochs: 1}
        export: {formats: [tflite, onnx]}
    """))
    exporter = Exporter(SimpleNamespace(recipe=recipe))
    base = [(fmt.name, precision) for fmt, precision in exporter.combinations("base", False)]
    assert base == [("tflite", "fp32"), ("tflite", "int8"), ("tflite", "int8-mixed"),
                    ("onnx", "fp32"), ("onnx", "int8"), ("onnx", "int8-mixed")]
    pruned = [precision for _, precision in exporter.combinations("pruned", False)]
    assert "int8-mixed" not in pruned and "int8" in pruned


@pytest.mark.parametrize("fmt", ["tflite", "openvino"])
def test_the_recipes_own_keep_float_stays_float_in_every_trial(fmt, models, tmp_path):
    import importlib

    from edgekit.convert.mixed import build_mixed

    _, bad, calibration, data = models
    path = tmp_path / f"mixed{FORMATS[fmt].suffix}"
    settings = build_mixed(FORMATS[fmt], bad, path, calibration, {}, keep_float=("last",), max_drop=BUDGET, data=data,
                           task="classification", log=lambda line: None)
    assert settings["mixed"]["kept_float"] == ["middle"]  # what the search added
    assert settings["kept_float"] == ["last", "middle"] and settings["float_layers"] == 2
    converter = importlib.import_module(FORMATS[fmt].converter_module)
    assert converter.layer_float(path, ["first", "middle", "last"], ("tiny",)) == {"first": False, "middle": True, "last": True}


def test_a_build_makes_int8_mixed_rows_on_the_validation_split(write_recipe):
    import json

    import tf_keras
    from click.testing import CliRunner

    from edgekit.cli import cli

    recipe = write_recipe("""
        name: mixed_build
        seed: 0
        data: {source: digits, val_fraction: 0.2}
        model: {arch: mlp, params: {hidden: [16]}}
        train: {epochs: 2}
        quantize: {precisions: [fp32, int8], calibration_samples: 32, max_drop: 0.01}
        export: {formats: [tflite, onnx]}
        benchmark: {warmup: 1, runs: 2, inputs: 2, profile: false}
    """)
    run = recipe.parent / "run"
    tf_keras.backend.clear_session()
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run)])
    assert result.exit_code == 0, result.output
    results = json.loads((run / "results.json").read_text())
    ids = [row["id"] for row in results["rows"]]
    assert ids == ["keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu", "tflite-int8-mixed@cpu",
                   "onnx-fp32@cpu", "onnx-int8@cpu", "onnx-int8-mixed@cpu"]
    rows = {row["id"]: row for row in results["rows"]}
    for fmt in ("tflite", "onnx"):
        row = rows[f"{fmt}-int8-mixed@cpu"]
        assert row["status"] == "ok" and row["size_bytes"] > 0 and row["latency_ms"]["p50"] > 0
        mixed = row["settings"]["mixed"]
        # scored on the validation split, never the test split
        assert mixed["budget"] == 0.01 and mixed["validation_samples"] == results["data"]["splits"]["val"]
        assert mixed["validation_samples"] != results["data"]["splits"]["test"]
        assert mixed["met"] is True or mixed["reason"]
        if mixed["met"]:
            assert mixed["drop"] <= 0.01
        assert row["settings"]["float_layers"] == len(mixed["kept_float"])
    # A second build takes every artifact from the cache, int8-mixed included.
    again = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run)])
    assert again.exit_code == 0, again.output
    assert "[convert] tflite-int8-mixed (cached)" in again.output and "int8-mixed trial" not in again.output
