"""Integer inputs stay integer: a text classifier over int32 token ids, through a real build.

The labels depend on which of a few random subsets of the vocabulary appears in a sequence,
and the ids are not ordered by label: an artifact that quantized the ids themselves (1,000
ids into 256 int8 buckets, neighbouring ids merged) would lose most of its accuracy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli

VOCAB, LENGTH, CLASSES = 1000, 16, 4


def _token_data(rng, n: int, groups: list[np.ndarray], noise: np.ndarray):
    """Sequences of 16 ids: 5 from the class's own random id subset, the rest from shared noise ids."""
    y = rng.integers(0, CLASSES, n)
    x = rng.choice(noise, size=(n, LENGTH))
    for i, label in enumerate(y):
        slots = rng.choice(LENGTH, 5, replace=False)
        x[i, slots] = rng.choice(groups[label], 5)
    return x.astype(np.int32), y.astype(np.int64)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("text-run")
    rng = np.random.default_rng(0)
    ids = rng.permutation(VOCAB)  # class subsets scattered over the vocabulary
    groups, noise = [ids[40 * c : 40 * (c + 1)] for c in range(CLASSES)], ids[40 * CLASSES :]
    x_train, y_train = _token_data(rng, 2000, groups, noise)
    x_test, y_test = _token_data(rng, 400, groups, noise)
    # Bucketing ids the way an int8 input of scale ~3.9 would (4 neighbours per bucket) leaves
    # every bucket mixing class ids with noise ids: the premise of the test, checked.
    bucket_of = np.arange(VOCAB) // 4
    assert len({tuple(sorted(set(bucket_of[g]))) for g in groups}) == CLASSES
    assert all(len(set(bucket_of[g]) & set(bucket_of[noise])) > 20 for g in groups)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((LENGTH,), dtype="int32"),
        keras.layers.Embedding(VOCAB, 8),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(CLASSES, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=8, batch_size=64, verbose=0)
    model.save(folder / "text.keras")
    np.savez(folder / "text.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    recipe = folder / "text.yaml"
    recipe.write_text(
        "name: text\nseed: 1\nmodel: {file: text.keras}\ndata: {source: npz, path: text.npz}\n"
        "quantize: {precisions: [fp32, fp16, dynamic, int8, int16x8], calibration_samples: 100}\n"
        "benchmark: {runs: 5, warmup: 1, inputs: 2, profile: false}\n"
    )
    run_dir = folder / "run"
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir, json.loads((run_dir / "results.json").read_text())


def test_every_tflite_artifact_takes_int32_token_ids(text_run):
    from edgekit.runtimes.litert import interpreter_class

    run_dir, _ = text_run
    interpreter_cls, _ = interpreter_class()
    for precision in ("fp32", "fp16", "dynamic", "int8", "int16x8"):
        interpreter = interpreter_cls(model_path=str(run_dir / "artifacts" / f"tflite-{precision}.tflite"))
        (tensor,) = interpreter.get_input_details()
        assert tensor["dtype"] == np.int32, precision
        assert tuple(tensor["shape"]) == (1, LENGTH), precision
        assert tensor["quantization"] == (0.0, 0), precision  # the ids themselves, not quantized
    int8 = interpreter_cls(model_path=str(run_dir / "artifacts" / "tflite-int8.tflite"))
    assert int8.get_output_details()[0]["dtype"] == np.int8  # the output is still full-integer


def test_onnx_and_openvino_artifacts_take_int32(text_run):
    import onnx

    from edgekit.runtimes.openvino import disable_telemetry

    run_dir, _ = text_run
    for precision in ("fp32", "int8"):
        graph = onnx.load(str(run_dir / "artifacts" / f"onnx-{precision}.onnx")).graph
        (tensor,) = graph.input
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT32, precision
        assert not any(node.op_type == "Cast" and node.input[0] == tensor.name for node in graph.node), precision
    disable_telemetry()
    import openvino as ov

    for precision in ("fp32", "int8"):
        model = ov.Core().read_model(run_dir / "artifacts" / f"openvino-{precision}.xml")
        assert model.input(0).get_element_type() == ov.Type.i32, precision
        assert list(model.input(0).get_shape()) == [1, LENGTH], precision


def test_int8_accuracy_is_within_a_point_of_fp32_in_every_format(text_run):
    _, results = text_run
    rows = {row["id"]: row for row in results["rows"]}
    for row in rows.values():
        assert row["status"] == "ok", (row["id"], row["reason"])
    base = rows["keras-fp32@cpu"]["metrics"]["accuracy"]
    assert base > 0.9  # the model learned the id subsets
    for fmt in ("tflite", "onnx", "openvino"):
        fp32 = rows[f"{fmt}-fp32@cpu"]["metrics"]["accuracy"]
        assert fp32 == pytest.approx(base, abs=1e-9), fmt
        assert rows[f"{fmt}-int8@cpu"]["metrics"]["accuracy"] >= fp32 - 0.01, fmt
    for precision in ("fp16", "dynamic", "int16x8"):
        assert rows[f"tflite-{precision}@cpu"]["metrics"]["accuracy"] >= base - 0.01, precision
