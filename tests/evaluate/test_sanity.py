"""The sanity floor under a classification build (majority class and chance of its test split),
the early-stopping record, and `edgekit check` failing a suspect baseline unless told otherwise."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.evaluate import sanity


def test_wilson_interval_matches_the_textbook_values():
    assert sanity.wilson(0.5, 100) == pytest.approx([0.4038, 0.5962], abs=1e-4)
    assert sanity.wilson(0.0, 20) == pytest.approx([0.0, 0.1611], abs=1e-4)  # never below 0, unlike the normal one
    assert sanity.wilson(1.0, 8)[1] == 1.0


def _untrained_outputs(x, classes: int):
    """The test outputs of a real tf_keras classifier that has not learned (one bias dominates:
    it predicts one class everywhere, as a model restored at an early epoch did)."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input(x.shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(classes, activation="softmax", bias_initializer=keras.initializers.Constant(
                                  [5.0] + [0.0] * (classes - 1)))])
    return np.asarray(model(x, training=False))


def test_one_class_everywhere_is_suspect_and_names_the_restored_epoch(digits):
    x, y = digits
    x, y = x[:66], (y[:66] % 3)  # 3 classes, unbalanced: 0 is the majority
    outputs = _untrained_outputs(x, 3)
    accuracy = float(np.mean(outputs.argmax(-1) == y))
    restore = {"restored_epoch": 3, "epochs_run": 33, "epochs_planned": 60, "val_loss": 1.08, "validation_samples": 8,
               "patience": 30}
    record = sanity.floor("classification", {"accuracy": accuracy}, outputs, y, ["a", "b", "c"], restore)
    assert record["majority_class"] == {"id": 0, "name": "a", "share": pytest.approx(np.mean(y == 0))}
    assert record["chance"] == pytest.approx(1 / 3) and record["floor"] == record["majority_class"]["share"]
    assert record["most_predicted"]["share"] == 1.0 and record["predicted_classes"] == 1
    assert record["suspect"] and record["baseline"] == accuracy
    reason = record["reason"]
    assert "\n" not in reason and "it predicts 'a' for 100% of the samples" in reason
    assert "inputs scaled twice or not at all" in reason and "labels in another order" in reason
    assert "it restored epoch 3 of 33, chosen by 8 validation samples" in reason
    # A model well above the floor is not suspect; other tasks have no floor.
    good = np.eye(3)[y] * 0.9 + 0.05
    assert not sanity.floor("classification", {"accuracy": 1.0}, good, y, ["a", "b", "c"])["suspect"]
    assert sanity.floor("regression", {"mae": 1.0}, good, y, []) is None


def test_early_stopping_record_reads_the_history(tmp_path, write_recipe):
    from edgekit.recipe.schema import load_recipe

    (tmp_path / "model").mkdir()
    losses = [1.1, 0.93, 0.95, 0.93] + [1.2] * 29
    (tmp_path / "model" / "history.json").write_text(json.dumps({"loss": losses, "val_loss": losses}))
    recipe = load_recipe(write_recipe("name: t\nmodel: {arch: mlp}\ntrain: {epochs: 60, early_stopping_patience: 30}\n"))
    record = sanity.early_stopping(recipe, tmp_path, 8)
    # tf_keras restores the first epoch of lowest val_loss
    assert (record["restored_epoch"], record["epochs_run"], record["validation_samples"]) == (2, 33, 8)
    assert sanity.restored_line(record) == ("early stopping restored the weights of epoch 2 of 33 "
                                            "(lowest val_loss 0.93 on 8 validation samples)")
    plain = load_recipe(write_recipe("name: t\nmodel: {arch: mlp}\ntrain: {early_stopping_patience: 0}\n", "plain.yaml"))
    assert sanity.early_stopping(plain, tmp_path, 8) is None
    assert "8 sample(s) (under 30)" in sanity.small_validation_line(8)
    assert sanity.small_validation_line(0) is None and sanity.small_validation_line(30) is None


def test_the_tiny_build_is_above_its_floor_and_check_fails_a_suspect_copy(tiny_run, digits, tmp_path):
    results = tiny_run.results
    floor = results["sanity"]
    assert not floor["suspect"] and "reason" not in floor and "suspect" not in results["rows"][0]
    assert floor["classes"] == 10 and floor["chance"] == 0.1 and 0.08 < floor["majority_class"]["share"] < 0.15
    assert floor["baseline_ci95"][0] > floor["floor"] and floor["test_samples"] == results["data"]["splits"]["test"]
    assert "[sanity]" not in tiny_run.output
    # The same run with its baseline's outputs from a model that learned nothing.
    run = tmp_path / "run"
    shutil.copytree(tiny_run.dir, run)
    x, y = digits[0][:floor["test_samples"]], digits[1][:floor["test_samples"]]
    outputs = _untrained_outputs(x, 10)
    bad = sanity.floor("classification", {"accuracy": float(np.mean(outputs.argmax(-1) == y))}, outputs, y,
                       [str(i) for i in range(10)])
    (run / "results.json").write_text(json.dumps({**results, "sanity": bad}))
    failed = CliRunner().invoke(cli, ["check", str(run)])
    assert failed.exit_code == 1 and "keras-fp32@cpu sanity floor suspect: suspect baseline" in failed.output
    assert "pass --allow-suspect to check it anyway" in failed.output
    allowed = CliRunner().invoke(cli, ["check", str(run), "--allow-suspect"])
    assert allowed.exit_code == 0, allowed.output
    assert allowed.output.splitlines()[-1].endswith("its Keras baseline is suspect, passed by --allow-suspect")
    assert CliRunner().invoke(cli, ["check", str(tiny_run.dir)]).exit_code == 0
