"""End to end: a tiny recipe really trains, converts, evaluates and benchmarks (the session's
shared tiny build, ``tiny_run``), and the variations of it that must build too."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.formats import FORMATS
from edgekit.report.rows import add_speedups
from tests.conftest import real_row


def test_build_succeeds_and_prints_the_table(tiny_run):
    results = tiny_run.results
    assert tiny_run.exit_code == 0, tiny_run.output
    # openvino gains a bf16 twin of fp32 on CPUs with AVX-512 BF16 / AMX (formats.Format.precisions_for)
    ids = ["keras-fp32@cpu"] + [f"{fmt}-{p}@cpu" for fmt in ("tflite", "onnx", "openvino")
                                for p in FORMATS[fmt].precisions_for(["fp32", "int8"])]
    for row_id in ids:
        assert row_id in tiny_run.output
    assert [row["id"] for row in results["rows"]] == ids
    assert results["baseline"] == "keras-fp32@cpu"


def test_accuracies_are_real(tiny_run):
    results = tiny_run.results
    rows = {row["id"]: row for row in results["rows"]}
    for row in rows.values():
        assert row["status"] == "ok", row["reason"]
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
    base = rows["keras-fp32@cpu"]["metrics"]["accuracy"]
    assert base > 0.85  # digits is easy even for a tiny MLP
    for fmt in ("tflite", "onnx", "openvino"):
        fp32, int8 = rows[f"{fmt}-fp32@cpu"], rows[f"{fmt}-int8@cpu"]
        assert fp32["parity"]["top1_agreement"] >= 0.995 and fp32["parity"]["max_abs_diff"] < 1e-4
        assert int8["metrics"]["accuracy"] == pytest.approx(base, abs=0.03)
        assert int8["delta"]["accuracy"] == pytest.approx(int8["metrics"]["accuracy"] - base)


def test_latencies_are_distributions(tiny_run):
    run_dir, results = tiny_run.dir, tiny_run.results
    samples = json.loads((run_dir / "latency.json").read_text())["rows"]
    for row in results["rows"]:
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["runs"] >= 20 and len(samples[row["id"]]) == lat["runs"]
        assert row["speedup_vs_baseline"] == pytest.approx(results["rows"][0]["latency_ms"]["p50"] / lat["p50"])


def test_sizes_match_files_on_disk(tiny_run):
    run_dir, results = tiny_run.dir, tiny_run.results
    rows = {row["id"]: row for row in results["rows"]}
    for row in rows.values():
        path = run_dir / row["path"]  # relative to the run directory
        files = [path] + ([path.with_suffix(".bin")] if row["format"] == "openvino" else [])
        assert row["size_bytes"] == sum(f.stat().st_size for f in files) > 0
    assert (run_dir / "artifacts" / "tflite-int8.tflite").exists()
    assert (run_dir / "artifacts" / "openvino-int8.bin").exists()
    for fmt in ("tflite", "onnx", "openvino"):
        assert rows[f"{fmt}-int8@cpu"]["size_bytes"] < rows[f"{fmt}-fp32@cpu"]["size_bytes"]


def test_results_record_data_environment_and_calibration(tiny_run):
    run_dir, results = tiny_run.dir, tiny_run.results
    assert results["data"]["calibration"] == {"source": "train", "size": 64, "requested": 64, "seed": 3}
    assert results["environment"]["python"] and "tensorflow" in results["environment"]["packages"]
    assert results["recipe"]["name"] == "tiny" and len(results["recipe"]["sha256"]) == 64
    assert all(row["settings"]["threads"] == 1 for row in results["rows"])
    report = (run_dir / "report.md").read_text()
    assert "| tflite-int8@cpu |" in report
    assert (run_dir / "model" / "model.keras").exists() and (run_dir / "recipe.yaml").exists()


def test_model_file_recipe_reuses_a_trained_model(tiny_run, write_recipe, tmp_path):
    run_dir, results = tiny_run.dir, tiny_run.results
    recipe = write_recipe(
        f"name: reuse\nmodel: {{file: {run_dir / 'model' / 'model.keras'}}}\nseed: 3\n"
        "quantize: {calibration_samples: 64}\nbenchmark: {runs: 5, warmup: 1, inputs: 2, profile: false}\n"
        "export: {formats: [tflite]}\n"  # what is asserted is the Keras row's
    )
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "reuse")])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "reuse" / "results.json").read_text())
    # Same seed, same split, same weights: the same accuracy as the build that trained it.
    assert again["rows"][0]["metrics"] == results["rows"][0]["metrics"]
    assert again["model"]["keras"] == "tf_keras"


def test_keras3_model_file_goes_through_ptq(write_recipe, tmp_path, digits):
    import keras

    x, y = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    model.save(tmp_path / "k3.keras")
    recipe = write_recipe("name: k3\nmodel: {file: k3.keras}\nbenchmark: {runs: 5, warmup: 1, inputs: 2, profile: false}\n"
                          "export: {formats: [tflite]}\n")
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "k3run")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "k3run" / "results.json").read_text())
    assert results["model"]["keras"] == "keras3"
    rows = {row["id"]: row for row in results["rows"]}
    assert rows["tflite-fp32@cpu"]["parity"]["max_abs_diff"] < 1e-4
    assert rows["tflite-int8@cpu"]["metrics"]["accuracy"] > 0.8


def _row(precision, p50, fmt="onnx"):
    return real_row(fmt, precision, p50=p50, runtime=f"{fmt}rt")


def test_int8_slower_than_fp32_is_flagged():
    rows = [_row("fp32", 2.0, "keras"), _row("fp32", 1.0), _row("int8", 1.08), _row("fp32", 1.0, "tflite"), _row("int8", 0.5, "tflite"),
            _row("fp32", 1.0, "openvino"), _row("int8", 1.03, "openvino")]
    add_speedups(rows)
    # rows timed in one round have no interval: the 5% threshold decides, and the note says so
    assert rows[2]["notes"] == ["int8 slower than fp32 in onnxrt: 1.08x (one round: no interval)"]
    assert rows[4]["notes"] == [] and rows[4]["vs_fp32_same_runtime"] == pytest.approx(2.0)
    assert rows[1]["speedup_vs_baseline"] == pytest.approx(2.0)
    assert rows[6]["notes"] == []  # within the 5% timing noise


ERF_BUILDER = '''
import tensorflow as tf
import tf_keras as keras


class Erf(keras.layers.Layer):
    """tf.math.erf has no TFLite builtin kernel; ONNX and OpenVINO convert it."""

    def call(self, x):
        return tf.math.erf(x)


def build(input_shape, num_classes, units=32):
    return keras.Sequential([
        keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(units), Erf(),
        keras.layers.Dense(num_classes, activation="softmax"),
    ])
'''


def test_a_format_that_cannot_convert_fails_alone(write_recipe, tmp_path):
    (tmp_path / "erfnet.py").write_text(ERF_BUILDER)
    recipe = write_recipe(
        "name: erf\nmodel: {python: 'erfnet:build', params: {units: 16}}\ntrain: {epochs: 4, learning_rate: 0.01}\n"
        "export: {formats: [tflite, onnx, openvino]}\nbenchmark: {runs: 5, warmup: 1, inputs: 2, profile: false}\n"
    )
    run_dir = tmp_path / "erf-run"
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(run_dir)])
    assert result.exit_code == 1
    assert "row(s) failed: tflite-fp32@cpu, tflite-int8@cpu" in result.output
    results = json.loads((run_dir / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    for row_id in ("tflite-fp32@cpu", "tflite-int8@cpu"):
        assert rows[row_id]["status"] == "failed"
        assert rows[row_id]["reason"].startswith("conversion failed: ConverterError")
        assert "\n" not in rows[row_id]["reason"]
    for row_id in ("keras-fp32@cpu", "onnx-fp32@cpu", "onnx-int8@cpu", "openvino-fp32@cpu", "openvino-int8@cpu"):
        assert rows[row_id]["status"] == "ok", rows[row_id]["reason"]
        assert rows[row_id]["latency_ms"]["p50"] > 0
    assert rows["onnx-fp32@cpu"]["parity"]["top1_agreement"] >= 0.995
    report = (run_dir / "report.md").read_text()
    assert "failed: conversion failed" in report and "| onnx-int8@cpu |" in report
