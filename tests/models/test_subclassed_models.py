"""Subclassed Keras models: refused in safe mode with the fix named; with safe mode off, their
module is imported from the recipe's folder and the model traced to a functional graph, with
its trained weights (Keras 3 and tf_keras, with and without get_config)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import ModelError
from edgekit.models.files import load_model_file

SHAPE = (8, 8, 1)

#: the user's module, next to the recipe; importing it leaves a mark, so a test can tell it ran
MODULE = '''
import pathlib
import keras
import tf_keras

pathlib.Path(__file__).with_name("imported").touch()


@keras.saving.register_keras_serializable(package="nets")
class K3Net(keras.Model):
    def __init__(self, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = keras.layers.Conv2D(2, 3, activation="relu")
        self.head = keras.layers.Dense(classes)

    def call(self, x):
        return self.head(keras.ops.reshape(self.conv(x), (-1, 72)))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


class K3Plain(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.head = keras.layers.Dense(3)

    def call(self, x):
        return self.head(keras.ops.reshape(x, (-1, 64)))


@tf_keras.utils.register_keras_serializable(package="nets")
class TfkNet(tf_keras.Model):
    def __init__(self, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.flat = tf_keras.layers.Flatten()
        self.head = tf_keras.layers.Dense(classes)

    def call(self, x):
        return self.head(self.flat(x))

    def get_config(self):
        return {"classes": self.classes, "name": self.name}


class TfkPlain(tf_keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.flat = tf_keras.layers.Flatten()
        self.head = tf_keras.layers.Dense(3)

    def call(self, x):
        return self.head(self.flat(x))
'''
CLASSES = ["K3Net", "K3Plain", "TfkNet", "TfkPlain"]


def _forget(folder) -> None:
    """As in a fresh process: the module not imported, its classes registered with neither Keras."""
    import keras
    import tf_keras

    sys.modules.pop("nets", None)
    for registry in (keras.saving.get_custom_objects(), tf_keras.utils.get_custom_objects()):
        for key in [k for k in registry if k.startswith("nets>")]:
            registry.pop(key)
    (folder / "imported").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(folder, {class: (file, outputs of the model that was saved on X)}, X): each model saved
    with its (random, seeded) weights; the module then forgotten, as in a fresh process."""
    import keras
    import tf_keras

    folder = tmp_path_factory.mktemp("subclassed")
    (folder / "nets.py").write_text(MODULE)
    sys.path.insert(0, str(folder))
    try:
        import nets
        x = np.random.default_rng(0).normal(size=(6, *SHAPE)).astype(np.float32)
        files = {}
        for name in CLASSES:
            (keras if name.startswith("K3") else tf_keras).utils.set_random_seed(7)
            model = getattr(nets, name)()
            outputs = np.asarray(model(x))
            model.save(folder / f"{name}.keras")
            files[name] = (folder / f"{name}.keras", outputs)
    finally:
        sys.path.remove(str(folder))
        _forget(folder)
    return folder, files, x


@pytest.mark.parametrize("name", CLASSES)
def test_safe_mode_refuses_a_subclassed_model_naming_the_fix(saved, name):
    folder, files, _ = saved
    with pytest.raises(ModelError) as error:
        load_model_file(files[name][0], sample_shape=SHAPE, import_dirs=(folder,))
    message = str(error.value)
    assert 'names the Python module "nets"' in message and "set model.safe_mode: false in the recipe" in message
    assert "traces a subclassed model to a functional graph" in message
    assert not (folder / "imported").exists() and "nets" not in sys.modules


@pytest.mark.parametrize("name", CLASSES)
def test_opting_out_traces_it_with_its_trained_weights(saved, name):
    """tf_keras would "load" a Keras 3 subclassed file into the Keras 3 class with fresh weights,
    silently: each file goes to the Keras that saved it, and the outputs are the saved model's."""
    folder, files, x = saved
    path, expected = files[name]
    lines = []
    try:
        model, flavour = load_model_file(path, safe_mode=False, sample_shape=SHAPE, import_dirs=(folder,), log=lines.append)
        assert flavour == ("keras3" if name.startswith("K3") else "tf_keras")
        assert tuple(model.inputs[0].shape[1:]) == SHAPE and type(model.layers[-1]).__name__ == name
        assert f"subclassed {name} traced to a functional graph" in lines[0]
        np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-6)
    finally:
        _forget(folder)


def test_a_module_that_is_not_there_is_named(saved, tmp_path):
    _, files, _ = saved
    with pytest.raises(ModelError, match=r"defined in the Python module nets, which cannot be imported .*put nets\.py in "
                                         r"the recipe's folder"):
        load_model_file(files["K3Net"][0], safe_mode=False, sample_shape=SHAPE, import_dirs=(tmp_path,))


@pytest.mark.slow
def test_init_opts_out_with_a_flag_and_the_build_measures_the_traced_model(saved, tmp_path):
    """`edgekit init` refuses naming --no-safe-mode; with it, the recipe says model.safe_mode:
    false and the build's workers import the module from the recipe's folder."""
    import json
    import shutil

    folder, files, x = saved
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(folder / "nets.py", work)
    shutil.copy(files["K3Net"][0], work)
    labels = np.argmax(files["K3Net"][1], axis=1)
    xs, ys = np.concatenate([x] * 10), np.concatenate([labels] * 10)
    np.savez(work / "data.npz", x_train=xs[:40], y_train=ys[:40], x_test=xs[40:], y_test=ys[40:])
    args = ["init", "--model", str(work / "K3Net.keras"), "--data", str(work / "data.npz"), "--out", str(work / "r.yaml")]
    try:
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == 2 and "pass --no-safe-mode to edgekit init only if you trust this file" in refused.output
        made = CliRunner().invoke(cli, [*args, "--no-safe-mode"])
        assert made.exit_code == 0, made.output
        doc = yaml.safe_load((work / "r.yaml").read_text())
        assert doc["model"] == {"file": "K3Net.keras", "safe_mode": False}
        doc["export"]["formats"], doc["quantize"]["precisions"] = ["tflite"], ["fp32"]
        doc["benchmark"] = {"warmup": 1, "runs": 5, "inputs": 2, "profile": False}
        (work / "r.yaml").write_text(yaml.safe_dump(doc))
        _forget(folder)
        built = CliRunner().invoke(cli, ["build", str(work / "r.yaml"), "--out", str(work / "run")])
        assert built.exit_code == 0, built.output
    finally:
        _forget(folder)
    results = json.loads((work / "run" / "results.json").read_text())
    assert results["model"]["traced"] == "K3Net" and results["model"]["keras"] == "keras3"
    rows = {row["id"]: row for row in results["rows"]}
    assert rows["keras-fp32@cpu"]["metrics"]["accuracy"] == 1.0  # the labels are the saved model's own classes
    assert rows["tflite-fp32@cpu"]["status"] == "ok" and rows["tflite-fp32@cpu"]["metrics"]["accuracy"] == 1.0
