"""Safe mode: a model file never runs code it carries unless the recipe says model.safe_mode: false.

Each attack model has a Lambda layer whose body creates a marker file when it runs; Keras runs
it while rebuilding the model on load, so the marker tells whether loading ran the file's code.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import ModelError
from edgekit.models.files import load_model_file

OPT_OUT = "set model.safe_mode: false in the recipe only if you trust this file"


def _lambda_model(keras, marker: Path):
    """A tiny model whose Lambda layer "evil" creates ``marker`` whenever it is called."""
    marker = str(marker)
    inp = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: (open(marker, "w").close(), t)[1], name="evil")(inp)
    return keras.Model(inp, keras.layers.Dense(2)(x))


def _save(fmt: str, folder: Path) -> tuple[Path, Path]:
    """Save a Lambda model in one format; return (model path, marker path), marker not yet there."""
    import keras
    import tf_keras

    flavour, suffix = fmt.split(":")
    marker = folder / "marker"
    model = _lambda_model(tf_keras if flavour == "tf_keras" else keras, marker)
    path = folder / ("model" if suffix == "savedmodel" else f"model.{suffix}")
    if suffix == "savedmodel":
        model.save(path, save_format="tf")
    else:
        model.save(path)
    marker.unlink(missing_ok=True)  # building the model called the Lambda once
    return path, marker


FORMATS = ["tf_keras:keras", "tf_keras:h5", "tf_keras:savedmodel", "keras3:keras", "keras3:h5"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_safe_mode_refuses_a_lambda_and_runs_nothing(fmt, tmp_path):
    path, marker = _save(fmt, tmp_path)
    with pytest.raises(ModelError) as error:
        load_model_file(path)  # safe mode is the default
    message = str(error.value)
    assert 'layer "evil" is a Lambda layer' in message and OPT_OUT in message
    assert "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_opting_out_loads_the_file_and_runs_its_code(fmt, tmp_path):
    path, marker = _save(fmt, tmp_path)
    model, flavour = load_model_file(path, safe_mode=False)
    assert flavour == fmt.split(":")[0]
    assert "evil" in [layer.name for layer in model.layers]
    assert marker.exists()  # every format runs the Lambda while rebuilding the model


def test_build_refuses_an_h5_with_a_lambda_in_one_line(write_recipe, tmp_path):
    path, marker = _save("tf_keras:h5", tmp_path)
    recipe = write_recipe(f"name: x\nmodel: {{file: {path.name}}}\n")
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and 'layer "evil" is a Lambda layer' in errors[0] and OPT_OUT in errors[0]
    assert not marker.exists()


def test_build_with_safe_mode_off_runs_the_files_code(write_recipe, tmp_path):
    path, marker = _save("tf_keras:h5", tmp_path)
    recipe = write_recipe(f"name: x\nmodel: {{file: {path.name}, safe_mode: false}}\n")
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    # The model loads (running the Lambda), then its input [4] does not fit the 8x8 digits.
    assert result.exit_code == 2 and "does not fit the model input [4]" in result.output, result.output
    assert marker.exists()


def _rewrite_config(src: Path, dst: Path, edit) -> None:
    """Copy a .keras zip, changing its config.json with ``edit(config)``."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            new.writestr(name, data)


@pytest.mark.parametrize("class_name", ["Evil", "edgekit>PositionEmbedding"])  # the second: a registered name, in the wrong key
def test_a_module_named_in_a_keras_file_is_not_imported(class_name, tmp_path, monkeypatch):
    """tf_keras' own safe mode imports any module a .keras config names; edgekit's does not."""
    import tf_keras

    marker = tmp_path / "imported"
    (tmp_path / "evil_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evil_mod", raising=False)
    tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)]).save(tmp_path / "plain.keras")
    path = tmp_path / "named.keras"
    _rewrite_config(tmp_path / "plain.keras", path, lambda c: c.update(module="evil_mod", class_name=class_name, registered_name=None))

    with pytest.raises(ModelError, match='names the Python module "evil_mod"'):
        load_model_file(path)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - what matters is the import that happened first
        tf_keras.models.load_model(path, compile=False, safe_mode=True)
    assert marker.exists()


def test_an_unregistered_custom_layer_is_refused(tmp_path):
    import tf_keras

    class Doubler(tf_keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inp = tf_keras.Input((4,))
    tf_keras.Model(inp, Doubler(name="twice")(inp)).save(tmp_path / "custom.h5")
    with pytest.raises(ModelError, match='layer "twice" is of class "Doubler", which is neither a Keras layer nor an edgekit one'):
        load_model_file(tmp_path / "custom.h5")


def test_a_savedmodel_custom_layer_loads_from_its_graph_without_running_python(tmp_path):
    """tf_keras revives an unknown class of a SavedModel from its traced graph: no Python runs, so it loads."""
    import numpy as np
    import tf_keras

    marker = tmp_path / "marker"

    class Doubler(tf_keras.layers.Layer):  # not registered: the loader cannot find this code
        def call(self, x):
            marker.touch()  # Python: runs when traced, is not part of the graph
            return 2 * x

    inp = tf_keras.Input((4,))
    tf_keras.Model(inp, Doubler(name="twice")(inp)).save(tmp_path / "sm", save_format="tf")
    marker.unlink()
    model, _ = load_model_file(tmp_path / "sm")
    np.testing.assert_allclose(np.asarray(model(np.ones((1, 4), np.float32))), 2.0)
    assert not marker.exists()


def test_a_python_lambda_outside_a_lambda_layer_is_refused(tmp_path):
    """Keras 3.15 cannot rebuild one (as an activation or initializer); refused anyway, it is code."""
    import keras

    marker = str(tmp_path / "marker")
    code = keras.saving.serialize_keras_object(lambda shape, dtype=None: (open(marker, "w").close(), shape)[1])
    assert code["class_name"] == "__lambda__"
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Dense(2, name="head")(inp)).save(tmp_path / "plain.keras")

    def initializer_from_lambda(config):
        config["config"]["layers"][1]["config"]["kernel_initializer"] = code

    _rewrite_config(tmp_path / "plain.keras", tmp_path / "init.keras", initializer_from_lambda)
    with pytest.raises(ModelError, match='layer "head" holds a Python lambda'):
        load_model_file(tmp_path / "init.keras")


def test_a_tf_op_layer_outside_plain_math_is_refused(tmp_path):
    import tensorflow as tf
    import tf_keras

    inp = tf_keras.Input((4,))
    tf_keras.Model(inp, tf.math.abs(inp)).save(tmp_path / "op.keras")
    load_model_file(tmp_path / "op.keras")  # tf.math ops are plain math

    def to_loader(config):
        op = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "TFOpLambda")
        op["config"]["function"] = "load_op_library"  # loads native code from a path
        op["config"]["name"] = op["name"] = "native"

    _rewrite_config(tmp_path / "op.keras", tmp_path / "native.keras", to_loader)
    with pytest.raises(ModelError, match='layer "native" calls TensorFlow "load_op_library"'):
        load_model_file(tmp_path / "native.keras")


@pytest.mark.parametrize("suffix", ["keras", "h5", "savedmodel"])
def test_edgekit_zoo_layers_pass_safe_mode(suffix, tmp_path):
    """The transformer holds edgekit's own registered PositionEmbedding layer: allowed."""
    from edgekit.models import build

    class Spec:
        arch, python, params, source = "transformer", None, {}, "transformer"

    model = build(Spec(), (29, 12), 9)
    path = tmp_path / ("model" if suffix == "savedmodel" else f"model.{suffix}")
    model.save(path, **({"save_format": "tf"} if suffix == "savedmodel" else {}))
    loaded, flavour = load_model_file(path)
    assert flavour == "tf_keras" and loaded.count_params() == model.count_params()


def test_an_unreadable_config_is_one_line(tmp_path):
    path = tmp_path / "bad.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{not json")
    with pytest.raises(ModelError, match="model config is not valid JSON"):
        load_model_file(path)


def test_a_truncated_h5_is_one_line(tmp_path):
    import tf_keras

    tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(2)]).save(tmp_path / "full.h5")
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])  # the HDF5 signature survives
    # refused by edgekit.models.file_checks' read of the HDF5 structure, before any Keras loader
    with pytest.raises(ModelError, match=r"model\.file: cannot read .*cut\.h5 as HDF5 .*truncated"):
        load_model_file(tmp_path / "cut.h5")


def test_a_config_nested_too_deeply_is_one_line(tmp_path):
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Functional", "config": {"layers": ' + "[" * 50_000 + "]" * 50_000 + "}}")
    with pytest.raises(ModelError, match="model config is not valid JSON"):
        load_model_file(path)
