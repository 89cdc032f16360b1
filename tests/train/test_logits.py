"""Logits or probabilities: a classifier ending in a linear layer trains with from_logits=True,
says so in the log and in results.json, and scores like the same network ending in softmax; the
detector reads tf_keras and Keras 3 graphs (Sequential and functional), and the zoo stays
probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.evaluate import scores
from edgekit.models.outputs import (
    LOGITS,
    PROBABILITIES,
    looks_like_probabilities,
    output_kind,
)

#: one small CNN for digits; ``head`` picks its ending: a linear Dense (logits) or a softmax one
HEADS_BUILDER = '''
import tf_keras as keras


def build(input_shape, num_classes, head="linear"):
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(num_classes, activation=None if head == "linear" else "softmax", name="scores"),
    ])
'''

HEADS_RECIPE = """
name: heads-{head}
seed: 0
data: {{source: digits}}
model: {{python: 'digits_heads:build', params: {{head: {head}}}}}
train: {{epochs: 15, learning_rate: 0.003}}
export: {{formats: [tflite]}}
benchmark: {{warmup: 1, runs: 5, inputs: 2, profile: false}}
"""

LOG_LINE = "[train] the model outputs logits (last layer scores is linear): training with from_logits=True"


@pytest.fixture(scope="module")
def head_builds(tmp_path_factory):
    """A real build of the same builder with each head: {head: (results, build output)}."""
    folder = tmp_path_factory.mktemp("heads")
    (folder / "digits_heads.py").write_text(HEADS_BUILDER)
    builds = {}
    for head in ("linear", "softmax"):
        recipe = folder / f"{head}.yaml"
        recipe.write_text(HEADS_RECIPE.format(head=head))
        result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(folder / f"run-{head}")])
        assert result.exit_code == 0, result.output
        builds[head] = (json.loads((folder / f"run-{head}" / "results.json").read_text()), result.output)
    return builds


def test_a_linear_head_trains_as_well_as_a_softmax_head(head_builds):
    accuracy = {head: {row["id"]: row["metrics"]["accuracy"] for row in results["rows"]}
                for head, (results, _) in head_builds.items()}
    linear, softmax = accuracy["linear"]["keras-fp32@cpu"], accuracy["softmax"]["keras-fp32@cpu"]
    assert softmax > 0.9, softmax
    assert abs(linear - softmax) <= 0.02, (linear, softmax)  # was 0.16 against 0.97 with the probabilities loss
    for row_id in ("tflite-fp32@cpu", "tflite-int8@cpu"):  # the artifacts output logits and score the same
        assert accuracy["linear"][row_id] == pytest.approx(linear, abs=0.02)


def test_the_output_kind_is_in_results_and_the_log(head_builds):
    (linear, linear_log), (softmax, softmax_log) = head_builds["linear"], head_builds["softmax"]
    assert linear["model"]["output"] == LOGITS
    assert softmax["model"]["output"] == PROBABILITIES
    assert LOG_LINE in linear_log.splitlines()
    assert "outputs logits" not in softmax_log


def test_parity_of_a_logits_model_is_on_probabilities(head_builds):
    rows = {row["id"]: row for row in head_builds["linear"][0]["rows"]}
    int8 = rows["tflite-int8@cpu"]["parity"]
    assert 0 < int8["max_abs_diff"] <= 1 and int8["top1_agreement"] >= 0.97
    assert rows["tflite-fp32@cpu"]["parity"]["max_abs_diff"] < 1e-4


def test_parity_compares_softmax_to_softmax_for_logits():
    rng = np.random.default_rng(0)
    baseline = rng.normal(scale=4, size=(50, 10))
    outputs = baseline + rng.normal(scale=0.5, size=baseline.shape)
    got = scores.parity(outputs, baseline, "classification")
    diff = np.abs(scores.softmax(outputs) - scores.softmax(baseline))
    assert got["max_abs_diff"] == pytest.approx(diff.max()) and got["mean_abs_diff"] == pytest.approx(diff.mean())
    assert got["max_abs_diff"] < np.abs(outputs - baseline).max()
    probs = scores.softmax(baseline)  # probabilities are compared as they are
    assert scores.parity(probs * 0.5, probs, "classification")["max_abs_diff"] == pytest.approx((probs * 0.5).max())
    # regression outputs are never squashed
    assert scores.parity(outputs, baseline, "regression")["max_abs_diff"] == pytest.approx(np.abs(outputs - baseline).max())


def test_classification_metrics_score_logits_and_probabilities_alike():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3, size=(200, 10))
    labels = rng.integers(0, 10, size=200)
    assert scores.metrics("classification", logits, labels) == scores.metrics("classification", scores.softmax(logits), labels)
    masks = rng.integers(0, 4, size=(3, 8, 8))
    pixels = rng.normal(size=(3, 8, 8, 4))
    assert scores.metrics("segmentation", pixels, masks) == scores.metrics("segmentation", scores.softmax(pixels), masks)


def _sequential(keras, ending: str):
    head = {
        "linear": [keras.layers.Dense(10, name="scores")],
        "dense_softmax": [keras.layers.Dense(10, activation="softmax", name="scores")],
        "activation": [keras.layers.Dense(10, name="scores"), keras.layers.Activation("softmax", name="probs")],
        "softmax_layer": [keras.layers.Dense(10, name="scores"), keras.layers.Softmax(name="probs")],
        "linear_then_dropout": [keras.layers.Dense(10, name="scores"), keras.layers.Dropout(0.2),
                                keras.layers.Activation("linear")],
    }[ending]
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"), *head])


def _functional(keras, ending: str):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    x = keras.layers.Dense(10, name="scores")(x)
    if ending == "activation":
        x = keras.layers.Activation("softmax", name="probs")(x)
    return keras.Model(inputs, x)


EXPECTED = {
    "linear": (LOGITS, "last layer scores is linear"),
    "dense_softmax": (PROBABILITIES, "last layer scores ends in softmax"),
    "activation": (PROBABILITIES, "last layer probs is a softmax Activation"),
    "softmax_layer": (PROBABILITIES, "last layer probs is a Softmax layer"),
    "linear_then_dropout": (LOGITS, "last layer scores is linear"),
}


@pytest.mark.parametrize("flavour", ["tf_keras", "keras"])
@pytest.mark.parametrize("ending", sorted(EXPECTED))
def test_the_graph_tells_logits_from_probabilities(flavour, ending):
    import importlib

    keras = importlib.import_module(flavour)
    found = output_kind(_sequential(keras, ending))  # no samples: the graph alone decides
    assert (found.kind, found.why) == EXPECTED[ending]
    if ending in ("linear", "activation"):
        found = output_kind(_functional(keras, ending))
        assert (found.kind, found.why) == EXPECTED[ending]


@pytest.mark.parametrize("flavour", ["tf_keras", "keras"])
def test_outputs_decide_where_the_graph_does_not(flavour, digits):
    import importlib

    keras = importlib.import_module(flavour)
    x = digits[0][:40]

    class Normalized(keras.layers.Layer):  # a custom last layer: the graph cannot tell
        def call(self, inputs):
            return keras.activations.softmax(inputs)

    class Scaled(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 3.0

    for last, kind in ((Normalized(), PROBABILITIES), (Scaled(), LOGITS)):
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10), last])
        found = output_kind(model, x)
        assert found.kind == kind and found.why.startswith("outputs on 32 training samples"), found
    relu = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="relu")])
    assert output_kind(relu, x).kind == LOGITS  # non-negative scores that do not sum to 1


def test_pruning_and_qat_wrappers_keep_the_kind():
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    for ending, kind in (("linear", LOGITS), ("activation", PROBABILITIES), ("dense_softmax", PROBABILITIES)):
        model = _sequential(keras, ending)
        pruned = tfmot.sparsity.keras.prune_low_magnitude(keras.models.clone_model(model))
        quantized = tfmot.quantization.keras.quantize_model(keras.models.clone_model(model))
        assert output_kind(pruned).kind == kind and output_kind(quantized).kind == kind, ending


def test_looks_like_probabilities():
    assert looks_like_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    assert not looks_like_probabilities(np.array([[0.2, 0.7]]))  # does not sum to 1
    assert not looks_like_probabilities(np.array([[1.5, -0.5]]))  # sums to 1, outside [0, 1]
    assert not looks_like_probabilities(np.array([[np.nan, 1.0]]))


def test_every_zoo_classifier_is_probabilities_by_its_graph():
    from edgekit.models import build
    from tests.models.test_models import CASES, _Spec

    for name, (shape, outputs, task, params, _) in CASES.items():
        if task not in ("classification", "segmentation"):
            continue
        found = output_kind(build(_Spec(name, **params), shape, outputs, task=task))
        assert found.kind == PROBABILITIES and "softmax" in found.why, (name, found)


LOGITS_FILE_RECIPE = """
name: logits-file
seed: 0
data: {source: digits}
model: {file: logits.keras}
compress:
  - qat: {epochs: 2}
export: {formats: [tflite]}
benchmark: {warmup: 1, runs: 5, inputs: 2, profile: false}
"""


def test_a_logits_model_file_fine_tunes_with_from_logits(tmp_path, digits):
    """A user's file that outputs logits: recorded as such, and QAT fine-tuning keeps its accuracy."""
    import tf_keras as keras

    x, y = digits
    keras.utils.set_random_seed(0)
    model = _sequential(keras, "linear")
    model.compile(keras.optimizers.Adam(0.003), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    model.save(tmp_path / "logits.keras")
    (tmp_path / "r.yaml").write_text(LOGITS_FILE_RECIPE)
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert ("[model] the model outputs logits (last layer scores is linear): compressed models fine-tune "
            "with from_logits=True") in result.output.splitlines()
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"]["output"] == LOGITS
    models = {m["name"]: m for m in results["models"]}
    base = models["base"]["keras_metrics"]["accuracy"]
    assert base > 0.85
    assert models["qat"]["keras_metrics"]["accuracy"] == pytest.approx(base, abs=0.03)


def test_fine_tuning_compiles_the_loss_the_model_needs(write_recipe):
    """Pruning, clustering and QAT fine-tune through ``fine_tune``: from_logits for a logits model
    (asked through the QAT wrappers), the plain loss for a softmax one and for regression."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from edgekit.compress._fit import fine_tune
    from edgekit.data import load_dataset
    from edgekit.recipe.schema import load_recipe

    recipe = load_recipe(write_recipe("name: ft\nmodel: {arch: mlp}\ntrain: {batch_size: 256}\n"))
    data = load_dataset(recipe.data, recipe.seed, 16, task=recipe.task)
    for ending, from_logits in (("linear", True), ("activation", False)):
        model = tfmot.quantization.keras.quantize_model(_sequential(keras, ending))
        fine_tune(model, data, recipe, 1, None, log=lambda line: None)
        if from_logits:
            assert model.loss.get_config()["from_logits"] is True, model.loss
        else:
            assert model.loss == "sparse_categorical_crossentropy"
    regression = load_recipe(write_recipe("name: ftr\ntask: regression\ndata: {source: diabetes}\nmodel: {arch: mlp}\n"))
    data = load_dataset(regression.data, regression.seed, 16, task=regression.task)
    linear = keras.Sequential([keras.Input(data.input_shape), keras.layers.Dense(1)])
    fine_tune(linear, data, regression, 1, None, log=lambda line: None)
    assert linear.loss == "mse"
