"""Preprocessing travels with the model (issue 13, bullet 2).

A tiny tabular build with ``normalize: standard``: every artifact, opened with its bare runtime
(no edgekit code), fed the RAW test features, gives the accuracy results.json reports. With
``embed_normalization: false`` the artifacts take normalized features and preprocess.json says
how to make them; applying it by hand gives the reported accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli

RECIPE = """
name: tiny_raw_inputs
seed: 3
data: {{source: wine, normalize: standard, val_fraction: 0.0{extra}}}
model: {{arch: mlp, params: {{hidden: [24]}}}}
train: {{epochs: 40, batch_size: 16, learning_rate: 0.01}}
quantize: {{precisions: [fp32, int8], calibration_samples: 64}}
export: {{formats: [tflite, onnx, openvino]}}
benchmark: {{warmup: 1, runs: 3, inputs: 2, profile: false}}
"""

ARTIFACT_ROWS = [f"{fmt}-{p}@cpu" for fmt in ("tflite", "onnx", "openvino") for p in ("fp32", "int8")]


def _raw_test_split():
    """The wine test split as raw features, drawn by the same code the build uses (seed 3)."""
    from edgekit.data import load_dataset
    from edgekit.recipe.schema import DataSpec

    data = load_dataset(DataSpec(source="wine", normalize="standard", val_fraction=0.0), seed=3,
                        calibration_samples=64)
    assert data.embedded  # the default: x_test holds raw features
    return data.x_test, data.y_test


def _build(tmp_path: Path, extra: str = "") -> tuple[Path, dict]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(extra=extra))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    return run_dir, json.loads((run_dir / "results.json").read_text())


def _tflite(path: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for sample in x:
        feed = sample[None].astype(np.float32)
        scale, zero_point = inp["quantization"]
        if np.issubdtype(inp["dtype"], np.integer):  # full-integer int8: quantize with the tensor's own params
            info = np.iinfo(inp["dtype"])
            feed = np.clip(np.round(feed / scale + zero_point), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], feed)
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])
        if np.issubdtype(raw.dtype, np.integer):
            o_scale, o_zero = out["quantization"]
            raw = (raw.astype(np.float32) - o_zero) * o_scale
        outputs.append(raw[0])
    return np.stack(outputs)


def _onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: sample[None].astype(np.float32)})[0] for sample in x])


def _openvino(path: Path, x: np.ndarray) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU")
    return np.concatenate([compiled(sample[None].astype(np.float32))[compiled.output(0)] for sample in x])


RUNTIMES = {"tflite": _tflite, "onnx": _onnx, "openvino": _openvino}


def _accuracy(row: dict, run_dir: Path, x: np.ndarray, y: np.ndarray) -> float:
    path = Path(row["path"])
    path = path if path.is_absolute() or path.exists() else run_dir / path
    outputs = RUNTIMES[row["format"]](path, x)
    return float(np.mean(outputs.argmax(axis=1) == y))


@pytest.fixture(scope="module")
def embedded_build(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("embedded"))


def test_every_artifact_takes_raw_features_in_its_bare_runtime(embedded_build):
    run_dir, results = embedded_build
    x_raw, y = _raw_test_split()
    assert np.abs(x_raw).max() > 100  # wine's proline is in the hundreds: really raw features
    rows = {row["id"]: row for row in results["rows"]}
    base = rows["keras-fp32@cpu"]["metrics"]["accuracy"]
    assert base > 0.85
    for row_id in ARTIFACT_ROWS:
        row = rows[row_id]
        assert row["status"] == "ok", row["reason"]
        measured = _accuracy(row, run_dir, x_raw, y)
        assert measured == pytest.approx(row["metrics"]["accuracy"], abs=1e-6), row_id
        assert measured >= base - 0.1, row_id  # far from chance (0.33), which raw features gave before
    assert not (run_dir / "preprocess.json").exists()


def test_int8_tflite_keeps_the_normalization_float_and_the_rest_int8(embedded_build):
    from ai_edge_litert.interpreter import Interpreter

    run_dir, results = embedded_build
    row = next(r for r in results["rows"] if r["id"] == "tflite-int8@cpu")
    path = Path(row["path"]) if Path(row["path"]).exists() else run_dir / row["path"]
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    # one int8 scale over raw features (proline ~1,000 beside hue ~1) would merge small-range
    # features; the input stays float32 and the network after the normalization is int8
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    ops = interpreter._get_ops_details()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    int8_ops = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"
                and all(details[t]["dtype"] == np.int8 for t in op["outputs"])]
    assert int8_ops, [op["op_name"] for op in ops]
    assert "QUANTIZE" in {op["op_name"] for op in ops}


def test_results_record_the_exact_statistics(embedded_build):
    _, results = embedded_build
    record = results["data"]["normalize"]
    assert record["kind"] == "standard" and record["per"] == "feature" and record["embedded"] is True
    assert record["fitted_on"] == "train" and record["formula"] == "(x - shift) / scale"
    assert record["shift_is"] == "mean" and record["scale_is"].startswith("std")
    assert len(record["shift"]) == len(record["scale"]) == 13 and record["shape"] == [13]
    # exact float32 values, not rounded: they equal the statistics of the raw training split
    from edgekit.data import load_dataset
    from edgekit.recipe.schema import DataSpec

    data = load_dataset(DataSpec(source="wine", normalize="standard", val_fraction=0.0), seed=3, calibration_samples=64)
    assert record["shift"] == data.normalization.shift.tolist()
    assert record["scale"] == data.normalization.scale.tolist()
    x_train = data.x_train * data.normalization.scale + data.normalization.shift  # back to raw, about
    np.testing.assert_allclose(record["shift"], x_train.mean(axis=0), rtol=1e-4)
    assert any(len(repr(v)) > 10 for v in record["scale"])  # not rounded to a few digits


def test_without_embedding_preprocess_json_gives_the_reported_accuracy(tmp_path):
    run_dir, results = _build(tmp_path, extra=", embed_normalization: false")
    x_raw, y = _raw_test_split()
    pre = json.loads((run_dir / "preprocess.json").read_text())
    assert pre["kind"] == "standard" and pre["formula"] == "(x - shift) / scale"
    assert results["data"]["normalize"]["embedded"] is False
    shift, scale = np.asarray(pre["shift"], np.float32), np.asarray(pre["scale"], np.float32)
    x_norm = ((x_raw.astype(np.float32) - shift) / scale).astype(np.float32)
    rows = {row["id"]: row for row in results["rows"]}
    for row_id in ("tflite-fp32@cpu", "tflite-int8@cpu", "onnx-fp32@cpu", "openvino-int8@cpu"):
        row = rows[row_id]
        assert row["status"] == "ok", row["reason"]
        assert _accuracy(row, run_dir, x_norm, y) == pytest.approx(row["metrics"]["accuracy"], abs=1e-6), row_id
    # the bare artifact fed raw features is what a user got before: far below the reported accuracy
    raw = _accuracy(rows["tflite-fp32@cpu"], run_dir, x_raw, y)
    assert raw < rows["tflite-fp32@cpu"]["metrics"]["accuracy"] - 0.2
