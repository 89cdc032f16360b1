"""Bad data stops `edgekit build` before any training: one line naming the array and what was
expected, exit 2, and no trained model in the run directory (issue 13, bullet 5)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli

RECIPE = """
name: bad-data
seed: 0
task: {task}
data:
  source: npz
  path: data.npz
  val_fraction: 0
model:
{model}
train:
  epochs: 1
  batch_size: 16
benchmark:
  warmup: 1
  runs: 2
  inputs: 2
  profile: false
"""

ZOO = "  arch: mlp\n  params: {hidden: [8]}"


def _arrays(features: int = 6, classes: int = 3, n: int = 60, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return {"x_train": rng.normal(size=(n, features)).astype(np.float32), "y_train": y,
            "x_test": rng.normal(size=(n // 2, features)).astype(np.float32), "y_test": y[: n // 2]}


def _model_file(folder, features: int = 6, outputs: int = 3):
    import tf_keras as keras

    model = keras.Sequential([keras.layers.Input((features,)), keras.layers.Dense(outputs, activation="softmax")])
    path = folder / "given.keras"
    model.save(path)
    return path


def _build(tmp_path, arrays: dict, model: str = ZOO, task: str = "classification"):
    np.savez(tmp_path / "data.npz", **arrays)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(task=task, model=model))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run_dir), "--fresh"])
    return result, run_dir


def _refused(result, run_dir, *words: str) -> str:
    """Exit 2, one line of error naming ``words``, and nothing trained or saved."""
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in error[0], error[0]
    assert "epoch 1/" not in result.output  # no training began
    assert not (run_dir / "model" / "model.keras").exists()
    assert not (run_dir / "results.json").exists()
    return error[0]


def test_x_test_with_another_sample_shape_is_refused_for_a_zoo_model(tmp_path):
    arrays = _arrays()
    arrays["x_test"] = arrays["x_test"][:, :5]
    line = _refused(*_build(tmp_path, arrays), "x_test", "[5]", "[6]")
    assert "same sample shape" in line


def test_x_test_that_does_not_fit_a_model_file_is_refused(tmp_path):
    # Every split agrees with the others, but not with the input of the user's model file.
    model = f"  file: {_model_file(tmp_path, features=4)}"
    line = _refused(*_build(tmp_path, _arrays(features=6), model=model), "x_train", "[6]", "[4]")
    assert "does not fit the model input" in line


def test_x_test_shape_differing_from_train_is_refused_for_a_model_file(tmp_path):
    arrays = _arrays()
    arrays["x_test"] = np.zeros((30, 7), np.float32)
    model = f"  file: {_model_file(tmp_path, features=6)}"
    _refused(*_build(tmp_path, arrays, model=model), "x_test", "[7]", "[6]")


def test_labels_beyond_the_model_file_outputs_are_refused(tmp_path):
    model = f"  file: {_model_file(tmp_path, features=6, outputs=3)}"
    line = _refused(*_build(tmp_path, _arrays(classes=5), model=model), "y_train", "5 classes", "3")
    assert "outputs" in line


def test_a_builder_whose_outputs_are_too_few_is_refused_before_training(tmp_path):
    (tmp_path / "narrow.py").write_text(
        "import tf_keras as keras\n"
        "def build(input_shape, num_classes):\n"
        "    return keras.Sequential([keras.layers.Input(input_shape), keras.layers.Dense(2, activation='softmax')])\n"
    )
    line = _refused(*_build(tmp_path, _arrays(classes=4), model="  python: narrow:build"), "y_train", "4 classes")
    assert "2" in line


@pytest.mark.parametrize("array", ["x_train", "x_test"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_features_are_refused(tmp_path, array, value):
    arrays = _arrays()
    arrays[array][3, 2] = value
    _refused(*_build(tmp_path, arrays), array, "NaN or infinite", "sample 3")


def test_nan_regression_targets_are_refused(tmp_path):
    arrays = _arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float32)
    arrays["y_train"][5] = np.nan
    _refused(*_build(tmp_path, arrays, task="regression"), "y_train", "NaN or infinite targets")


def test_an_empty_test_split_is_refused(tmp_path):
    arrays = _arrays()
    arrays["x_test"], arrays["y_test"] = arrays["x_test"][:0], arrays["y_test"][:0]
    _refused(*_build(tmp_path, arrays), "x_test", "no samples")


def test_a_class_missing_from_the_training_split_is_refused(tmp_path):
    arrays = _arrays(classes=3)
    keep = arrays["y_train"] != 1
    arrays["x_train"], arrays["y_train"] = arrays["x_train"][keep], arrays["y_train"][keep]
    _refused(*_build(tmp_path, arrays), "y_train", "class id(s) 1", "no training sample")


def test_class_names_with_a_line_break_are_refused(tmp_path):
    # labels.txt holds one name per line: a name with a line break would shift every index after it.
    arrays = _arrays(classes=2)
    names = np.array(["cat", "dog\nbig"])
    arrays["y_train"], arrays["y_test"] = names[arrays["y_train"]], names[arrays["y_test"]]
    _refused(*_build(tmp_path, arrays), "y", "line break")


def test_validate_refuses_class_names_with_a_line_break_too(tmp_path):
    arrays = _arrays(classes=2)
    names = np.array(["cat", "dog\nbig"])
    arrays["y_train"], arrays["y_test"] = names[arrays["y_train"]], names[arrays["y_test"]]
    np.savez(tmp_path / "data.npz", **arrays)
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(task="classification", model=ZOO))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "recipe.yaml")])
    assert result.exit_code == 2 and "line break" in result.output, result.output


def test_validation_labels_of_another_length_are_refused(tmp_path):
    arrays = _arrays()
    arrays["x_val"], arrays["y_val"] = arrays["x_test"][:10], arrays["y_test"][:8]
    _refused(*_build(tmp_path, arrays), "x_val", "10", "y_val", "8")


def test_validation_labels_beyond_the_model_outputs_are_refused(tmp_path):
    arrays = _arrays(classes=3)
    arrays["x_val"], arrays["y_val"] = arrays["x_test"][:10], np.full(10, 7)
    _refused(*_build(tmp_path, arrays), "y_val", "up to 7", "outputs 3")


def test_features_a_zoo_model_cannot_take_are_refused(tmp_path):
    # A 2-D image CNN given flat tabular rows: refused when the model is built, before any epoch.
    result, run_dir = _build(tmp_path, _arrays(features=6), model="  arch: cnn")
    line = _refused(result, run_dir, "cnn")
    assert "[6]" in line


def test_validate_refuses_data_that_lacks_the_chosen_input_shape(tmp_path):
    """model.input_shape [24, 24, 3] with an npz of 16x16 images: the build refused it once the
    model was loaded, while `edgekit validate` said ok; now validate says it too, without loading the model."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((20, 16, 16, 3), dtype=np.float32), y=np.arange(20) % 2)
    (tmp_path / "free.keras").write_bytes(b"validate does not open it")
    model = "  file: free.keras\n  input_shape: [{}, {}, 3]"
    for side, code in ((24, 2), (16, 0)):
        (tmp_path / "recipe.yaml").write_text(RECIPE.format(task="classification", model=model.format(side, side)))
        result = CliRunner().invoke(cli, ["validate", str(tmp_path / "recipe.yaml")])
        assert result.exit_code == code, result.output
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(task="classification", model=model.format(24, 24)))
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "recipe.yaml")])
    assert "data shape [16, 16, 3] is not model.input_shape [24, 24, 3]" in result.output
    assert len(result.output.strip().splitlines()) == 1
