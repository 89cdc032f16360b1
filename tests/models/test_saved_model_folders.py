"""SavedModel folders without a Keras model (``tf.saved_model.save``, Keras 3 ``model.export()``)
are models edgekit converts and measures: their serving signature, run by TensorFlow, is the
Keras baseline, and every post-training path converts it. In safe mode a signature whose graph
reaches outside the model (files, Python) is refused before TensorFlow loads it."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import ExportError, ModelError
from edgekit.models.files import load_model_file

SHAPE = (8, 8, 1)


def _signature_outputs(path, **inputs) -> dict:
    """What TensorFlow's own loader gives for the folder's serving signature."""
    import tensorflow as tf

    function = tf.saved_model.load(str(path)).signatures["serving_default"]
    return {name: value.numpy() for name, value in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """SavedModels written the ways people write them, none by edgekit; name -> (path, input name)."""
    import keras
    import tensorflow as tf
    import tf_keras

    root = tmp_path_factory.mktemp("saved-models")
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(64, 3)).astype(np.float32)

    class Scorer(tf.Module):  # a plain tf.Module with a named input and a dict output
        def __init__(self):
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None, *SHAPE], tf.float32, name="image")])
        def __call__(self, image):
            return {"scores": tf.nn.softmax(tf.reshape(image, [-1, 64]) @ self.w)}

    scorer = Scorer()
    tf.saved_model.save(scorer, str(root / "module"), signatures=scorer.__call__)

    keras.utils.set_random_seed(1)
    inputs = keras.Input(SHAPE)
    hidden = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    exported = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(hidden)))
    exported.export(str(root / "export"), verbose=False)

    tf_keras.utils.set_random_seed(2)
    functional = tf_keras.Sequential([tf_keras.Input(SHAPE), tf_keras.layers.Flatten(), tf_keras.layers.Dense(3)])
    tf.saved_model.save(functional, str(root / "tf_keras_tf_save"))  # no Keras metadata: tf_keras refuses it

    class Subclassed(tf_keras.Model):  # model.save(folder): tf_keras revives it without inputs
        def __init__(self):
            super().__init__()
            self.dense = tf_keras.layers.Dense(3)

        def call(self, x):
            return self.dense(tf_keras.layers.Flatten()(x))

    subclassed = Subclassed()
    subclassed(np.zeros((1, *SHAPE), np.float32))
    subclassed.save(str(root / "tf_keras_subclassed"), save_format="tf")
    return {"module": (root / "module", "image"), "export": (root / "export", inputs.name),
            "tf_keras_tf_save": (root / "tf_keras_tf_save", None), "tf_keras_subclassed": (root / "tf_keras_subclassed", None)}


@pytest.mark.parametrize("name", ["module", "export", "tf_keras_tf_save", "tf_keras_subclassed"])
def test_a_savedmodel_folder_is_its_serving_signature(folders, name):
    from edgekit.models.saved_model import is_signature_model

    path, input_name = folders[name]
    lines = []
    model, flavour = load_model_file(path, sample_shape=SHAPE, log=lines.append)
    assert flavour == "keras3" and is_signature_model(model)
    assert "without a Keras model: its serving_default signature" in lines[0]
    assert tuple(model.inputs[0].shape[1:]) == SHAPE and (input_name is None or model.inputs[0].name == input_name)
    x = np.random.default_rng(3).normal(size=(5, *SHAPE)).astype(np.float32)
    expected = next(iter(_signature_outputs(path, **{model.get_layer("saved_model").input_names[0]: x}).values()))
    np.testing.assert_array_equal(np.asarray(model(x)), expected)


def test_every_post_training_path_converts_a_savedmodel(folders, tmp_path):
    """fp32 / fp16 / dynamic / int8 in every format that reads them, each run in its runtime."""
    from edgekit.formats import FORMATS

    path, _ = folders["export"]
    model, _ = load_model_file(path, sample_shape=SHAPE)
    x = np.random.default_rng(4).uniform(0, 1, size=(40, *SHAPE)).astype(np.float32)
    reference = np.asarray(model(x))
    for fmt_name, precision, tolerance in [("tflite", "fp32", 1e-5), ("tflite", "fp16", 1e-2), ("tflite", "dynamic", 1e-2),
                                           ("tflite", "int8", None), ("onnx", "fp32", 1e-5), ("onnx", "int8", None),
                                           ("openvino", "fp32", 1e-5), ("openvino", "int8", None)]:
        fmt = FORMATS[fmt_name]
        artifact = tmp_path / f"{fmt_name}-{precision}{fmt.suffix}"
        fmt.load_converter()(model, artifact, precision, x, {})
        outputs = fmt.load_runtime()(artifact, 1, {}).predict(x)
        if tolerance is not None:
            np.testing.assert_allclose(outputs, reference, atol=tolerance, err_msg=f"{fmt_name} {precision}")
        else:  # int8: the classes it picks, and outputs within a quantization step or two of 1/256
            agree = float(np.mean(outputs.argmax(1) == reference.argmax(1)))
            assert agree >= 0.8 and np.abs(outputs - reference).max() < 0.1, (fmt_name, agree)


def test_a_signature_with_several_inputs_and_outputs_keeps_them_all(tmp_path):
    """Inputs fed by name, outputs a dict named as the signature names them (what the several-inputs
    and several-outputs rows read)."""
    import tensorflow as tf

    class TwoHeads(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features"),
                                      tf.TensorSpec([None, 2], tf.int32, name="ids")])
        def __call__(self, features, ids):
            return {"total": tf.reduce_sum(features, -1, keepdims=True), "ids_sum": tf.cast(tf.reduce_sum(ids, -1), tf.float32)}

    tf.saved_model.save(TwoHeads(), str(tmp_path / "two"), signatures=TwoHeads().__call__)
    model, _ = load_model_file(tmp_path / "two")
    # by name: a signature's protobuf map gives its inputs in another order from one process to the next
    assert [t.name for t in model.inputs] == ["features", "ids"] and list(model.output) == ["ids_sum", "total"]
    assert {t.name: str(t.dtype) for t in model.inputs} == {"features": "float32", "ids": "int32"}
    feeds = {"features": np.ones((2, 4), np.float32), "ids": np.array([[1, 2], [3, 4]], np.int32)}
    out = model([feeds[t.name] for t in model.inputs])
    np.testing.assert_array_equal(np.asarray(out["ids_sum"]), [3.0, 7.0])
    np.testing.assert_array_equal(np.asarray(out["total"]), [[4.0], [4.0]])


def test_safe_mode_refuses_a_signature_that_writes_a_file(tmp_path):
    import tensorflow as tf

    marker = tmp_path / "written"

    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
        def __call__(self, x):
            tf.io.write_file(str(marker), tf.strings.as_string(tf.reduce_sum(x)))
            return x * 2.0

    tf.saved_model.save(Writer(), str(tmp_path / "writer"), signatures=Writer().__call__)
    with pytest.raises(ModelError) as error:
        load_model_file(tmp_path / "writer")
    assert "runs the TensorFlow op WriteFile" in str(error.value) and "set model.safe_mode: false" in str(error.value)
    assert not marker.exists()
    model, _ = load_model_file(tmp_path / "writer", safe_mode=False)  # the opt-out loads it: the graph runs as it is
    model(np.ones((1, 3), np.float32))
    assert marker.exists()


@pytest.mark.parametrize("spec, fragment", [
    ("string", "is string; edgekit feeds numeric arrays"),
    ("fixed_batch", "takes batches of exactly 1"),
    ("scalar", "is a scalar (no batch axis)"),
])
def test_a_signature_edgekit_cannot_feed_is_one_line(spec, fragment, tmp_path):
    import tensorflow as tf

    specs = {"string": tf.TensorSpec([None], tf.string), "fixed_batch": tf.TensorSpec([1, 3], tf.float32),
             "scalar": tf.TensorSpec([], tf.float32)}

    class Odd(tf.Module):
        @tf.function(input_signature=[specs[spec]])
        def __call__(self, x):
            return {"y": tf.strings.length(x) if spec == "string" else x + 1.0}

    tf.saved_model.save(Odd(), str(tmp_path / spec), signatures=Odd().__call__)
    with pytest.raises(ModelError, match=re.escape(fragment)) as error:
        load_model_file(tmp_path / spec)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_init_and_build_measure_a_savedmodel_and_compression_says_why_not(folders, tmp_path):
    """`edgekit init` writes a recipe for the folder, the build measures it (the Keras row is the
    SavedModel run by TensorFlow); a compress section is refused in one line."""
    import json

    path, _ = folders["module"]
    x = np.random.default_rng(5).normal(size=(120, *SHAPE)).astype(np.float32)
    y = np.argmax(_signature_outputs(path, image=x)["scores"], axis=1)  # labels the model gets right
    np.savez(tmp_path / "data.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    recipe = tmp_path / "sm.yaml"
    made = CliRunner().invoke(cli, ["init", "--model", str(path), "--data", str(tmp_path / "data.npz"), "--out", str(recipe)])
    assert made.exit_code == 0, made.output
    assert "a SavedModel's serving signature" in recipe.read_text()
    text = recipe.read_text().replace("formats: [tflite, onnx, openvino]", "formats: [tflite, onnx]")
    recipe.write_text(text + "benchmark: {warmup: 1, runs: 5, inputs: 2, profile: false}\n")
    built = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    assert built.exit_code == 0, built.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert set(rows) == {"keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu", "onnx-fp32@cpu", "onnx-int8@cpu"}
    assert all(row["status"] == "ok" for row in rows.values()), [row["reason"] for row in rows.values()]
    assert rows["keras-fp32@cpu"]["metrics"]["accuracy"] == 1.0 == rows["tflite-fp32@cpu"]["metrics"]["accuracy"]
    assert results["model"]["keras"] == "keras3" and results["model"]["input_shape"] == list(SHAPE)
    assert results["model"]["serving_signature"] == "serving_default"

    recipe.write_text(text + "compress:\n  - prune: {sparsity: 0.5, epochs: 1}\n")  # refused at load: nothing runs
    refused = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run2")])
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert refused.exit_code == 2 and len(errors) == 1, refused.output
    assert "a TensorFlow SavedModel without a Keras model" in errors[0] and "remove the compress section" in errors[0]


def test_the_gpu_targets_keras3_file_refuses_a_signature(folders, tmp_path):
    from edgekit.convert import keras3

    model, _ = load_model_file(folders["module"][0], sample_shape=SHAPE)
    with pytest.raises(ExportError, match="only TensorFlow runs"):
        keras3.export(model, tmp_path / "m.keras", np.zeros((2, *SHAPE), np.float32))


def test_free_dimensions_of_a_single_input_take_the_datas_shape(tmp_path):
    import tensorflow as tf

    class Pool(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="img")])
        def __call__(self, img):
            return {"mean": tf.reduce_mean(img, axis=[1, 2])}

    tf.saved_model.save(Pool(), str(tmp_path / "pool"), signatures=Pool().__call__)
    model, _ = load_model_file(tmp_path / "pool", sample_shape=SHAPE)
    assert tuple(model.inputs[0].shape) == (None, *SHAPE) and tuple(model.outputs[0].shape) == (None, 1)
    unfixed, _ = load_model_file(tmp_path / "pool")  # without data the signature's own shape stays
    assert tuple(unfixed.inputs[0].shape) == (None, None, None, 1)


def test_a_keras_file_with_a_tfsmlayer_is_refused_in_safe_mode(folders, tmp_path):
    """Keras' TFSMLayer loads the SavedModel at a path its config names: safe mode asks for the folder itself."""
    import keras

    inputs = keras.Input(SHAPE)
    outputs = keras.layers.TFSMLayer(str(folders["module"][0]), call_endpoint="serving_default")(inputs)["scores"]
    keras.Model(inputs, outputs).save(tmp_path / "wrapped.keras")
    with pytest.raises(ModelError, match="is a TFSMLayer, which loads and runs the SavedModel at a path named in the file"):
        load_model_file(tmp_path / "wrapped.keras")


def test_a_keras_folder_whose_layers_are_only_revived_is_served_by_its_signature(tmp_path):
    """A tf_keras SavedModel whose custom layer class is not importable (basic-pitch's nmp and its
    CQT layers): tf_keras revives it, but the revived model cannot be saved and loaded again (every
    row of a build failed in its worker). Its signature stands for it; the constant tensor its
    layer captures (a window, as basic-pitch's CQT kernels) is frozen into the ONNX graph, where
    tf2onnx had made it a second input."""
    import onnxruntime
    import tensorflow as tf
    import tf_keras

    from edgekit.formats import FORMATS
    from edgekit.models.saved_model import is_signature_model

    class Window(tf_keras.layers.Layer):  # defined here only: no loader finds this class again
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.window = tf.constant(np.hanning(8).astype(np.float32))

        def call(self, x):
            return x * self.window

    inputs = tf_keras.Input((8,))
    hidden = Window()(inputs)
    made = tf_keras.Model(inputs, {"a": tf_keras.layers.Dense(2, name="a")(hidden),
                                   "b": tf_keras.layers.Dense(3, name="b")(hidden)})
    made.save(str(tmp_path / "revived"), save_format="tf")
    lines = []
    model, flavour = load_model_file(tmp_path / "revived", sample_shape=(8,), log=lines.append)
    assert flavour == "keras3" and is_signature_model(model)
    assert "layers Window tf_keras can only revive from the graph" in lines[0]
    x = np.random.default_rng(5).normal(size=(4, 8)).astype(np.float32)
    reference = {name: np.asarray(value) for name, value in model(x).items()}
    np.testing.assert_allclose(reference["a"], np.asarray(made(x)["a"]), atol=1e-6)
    FORMATS["onnx"].load_converter()(model, tmp_path / "revived.onnx", "fp32", x, {})
    session = onnxruntime.InferenceSession(str(tmp_path / "revived.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input"]  # not the captured window too
    names = [o.name for o in session.get_outputs()]
    for i in range(len(x)):
        for name, value in zip(names, session.run(None, {"input": x[i:i + 1]})):
            np.testing.assert_allclose(value[0], reference[name][i], atol=1e-5)
