"""The command line: exit code 2 with one line for bad input (what commands import: test_imports.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli


def test_schema_is_json():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert "benchmark" in json.loads(result.output)["properties"]


def test_formats_lists_each_runtime_with_its_installed_version_or_not_installed():
    from importlib import metadata

    result = CliRunner().invoke(cli, ["formats"])
    assert result.exit_code == 0
    tflite = next(line for line in result.output.splitlines() if line.startswith("tflite "))
    assert f"runtime: ai_edge_litert {metadata.version('ai-edge-litert')}, tflite_runtime not installed" in tflite
    onnx = next(line for line in result.output.splitlines() if line.startswith("onnx "))
    assert f"runtime: onnxruntime {metadata.version('onnxruntime')};" in onnx


def test_models_prints_plain_text():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0 and "`" not in result.output
    assert "every layer has alpha times the channels" in result.output  # was ``alpha`` in the docstring


def _bad_build(write_recipe, tmp_path, text):
    recipe = write_recipe(text)
    return CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])


def _assert_one_line_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0]


def test_missing_recipe_file(tmp_path):
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "none.yaml")])
    _assert_one_line_usage_error(result, "recipe file not found")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: x\nmodel: {arch: mlp\n", "not valid YAML at line"),
        ("name: x\nmodel: {arch: mlp}\nbenchmrk: {runs: 3}\n", 'benchmrk: unknown key (did you mean "benchmark"?)'),
        ("name: x\nmodel: {arch: mlp}\ntrain: {epochs: many}\n", "train.epochs: expected a valid integer"),
        ("name: x\nmodel: {arch: mlp}\ndata: {source: mnist_fashionn}\n", 'unknown dataset "mnist_fashionn"'),
        ("name: x\nmodel: {arch: resnet999}\n", 'unknown model "resnet999"'),
    ],
)
def test_recipe_errors_exit_2(write_recipe, tmp_path, text, fragment):
    _assert_one_line_usage_error(_bad_build(write_recipe, tmp_path, text), fragment)


def test_npz_without_arrays_exits_2(write_recipe, tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 4)))
    result = _bad_build(write_recipe, tmp_path, "name: x\nmodel: {arch: mlp}\ndata: {source: npz, path: d.npz}\n")
    _assert_one_line_usage_error(result, "expected arrays x_train, y_train, x_test, y_test (or x, y), found: images")


def test_data_that_does_not_fit_the_model_exits_2(write_recipe, tmp_path):
    import tf_keras as keras

    model = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "flat4.keras")
    result = _bad_build(write_recipe, tmp_path, "name: x\nmodel: {file: flat4.keras}\n")
    _assert_one_line_usage_error(result, "data shape [8, 8, 1] does not fit the model input [4]")


def test_corrupt_model_file_exits_2(write_recipe, tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"\x00garbage")
    result = _bad_build(write_recipe, tmp_path, "name: x\nmodel: {file: broken.keras}\n")
    _assert_one_line_usage_error(result, "model.file: cannot load")


def test_python_builder_that_cannot_be_imported_exits_2(write_recipe, tmp_path):
    result = _bad_build(write_recipe, tmp_path, "name: x\nmodel: {python: 'no_such_module:build'}\n")
    _assert_one_line_usage_error(result, "model.python: cannot import no_such_module")


def test_python_builder_missing_function_exits_2(write_recipe, tmp_path):
    (tmp_path / "mynets.py").write_text("def bulid(input_shape, num_classes):\n    pass\n")
    result = _bad_build(write_recipe, tmp_path, "name: x\nmodel: {python: 'mynets:build'}\n")
    _assert_one_line_usage_error(result, 'model.python: mynets has no function build (did you mean "bulid"?)')
