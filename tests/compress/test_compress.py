"""Compression: plans, impossible recipes, and sparsity/clusters/QAT that survive into every format."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from edgekit.compress import plan
from edgekit.errors import RecipeError
from edgekit.recipe.schema import load_recipe

COMPRESS_RECIPE = """
name: tinycompress
seed: 1
data: {source: digits}
model: {arch: mlp, params: {hidden: [96]}}
train: {epochs: 8, learning_rate: 0.01}
quantize: {calibration_samples: 64}
compress:
  - prune: {sparsity: 0.5, epochs: 2, learning_rate: 0.002}
  - cluster: {clusters: 8, epochs: 1}
  - prune: {sparsity: 0.5, epochs: 2, learning_rate: 0.002}
    qat: {epochs: 1}
export: {formats: [tflite, onnx, openvino]}
benchmark: {warmup: 1, runs: 5, inputs: 2, profile: false}  # 22 rows: the probes are tests/bench/test_profiles.py's
"""


def test_plan_shares_prefixes_and_names_lineage(write_recipe):
    recipe = load_recipe(write_recipe(
        "name: p\nmodel: {arch: mlp}\ncompress:\n"
        "  - prune: {sparsity: 0.8}\n"
        "  - prune: {sparsity: 0.8}\n    cluster: {clusters: 16}\n    qat: {}\n"
        "  - qat: {}\n"
    ))
    steps = {s.name: s for s in plan(recipe.compress)}
    assert list(steps) == ["pruned80", "pruned80-clustered16", "pruned80-clustered16-pcqat", "qat"]
    assert steps["pruned80-clustered16"].parent == "pruned80" and steps["pruned80-clustered16"].preserve == "prune"
    assert steps["pruned80-clustered16-pcqat"].preserve == "prune+cluster"
    assert steps["pruned80"].export and not steps["pruned80-clustered16"].export
    assert steps["qat"].parent == "base" and steps["qat"].quantized


@pytest.mark.parametrize(
    "compress, fragment",
    [
        ("  - prune: {structured: '2:4', sparsity: 0.8}\n", "2:4 structured pruning always gives 50% sparsity, received sparsity 0.8"),
        ("  - {}\n", "a compress entry needs at least one of prune, cluster or qat"),
        ("  - prune: {sparsity: 0.5}\n  - prune: {sparsity: 0.5, epochs: 9}\n", "two compress entries make the same model (pruned50)"),
        ("  - qat: {}\n    precisions: [fp32]\n", "quantization-aware and exports int8 only"),
        ("  - prune: {sparsity: 1.5}\n", "compress[0].prune.sparsity: expected less than 1"),
        ("  - prune: {sparsit: 0.5}\n", 'unknown key (did you mean "sparsity"?)'),
    ],
)
def test_impossible_compression_is_a_recipe_error(write_recipe, compress, fragment):
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(f"name: p\nmodel: {{arch: mlp}}\ncompress:\n{compress}"))
    assert fragment in info.value.message


def test_keras3_file_cannot_be_compressed(write_recipe, tmp_path):
    import keras

    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]).save(tmp_path / "k3.keras")
    path = write_recipe("name: p\nmodel: {file: k3.keras}\ncompress:\n  - prune: {sparsity: 0.5}\n")
    with pytest.raises(RecipeError, match="work only on Keras 2 \\(tf_keras\\) models; remove the compress section"):
        load_recipe(path)


class Steps:
    """A build log that records every progress step (what, done, total), as a terminal's bars get them."""

    def __init__(self):
        self.lines: list[str] = []
        self.steps: list[tuple[str, int, int | None]] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def step(self, what: str, done: int, total: int | None) -> None:
        with self._lock:
            self.steps.append((what, done, total))


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    import edgekit

    folder = tmp_path_factory.mktemp("compress")
    (folder / "r.yaml").write_text(COMPRESS_RECIPE)
    log = Steps()
    built = edgekit.build(folder / "r.yaml", out=folder / "run", log=log)
    assert built.failed == [], log.lines
    results = json.loads((folder / "run" / "results.json").read_text())
    # paths in results.json are relative to the run directory
    rows = {row["id"]: {**row, "path": row["path"] and str(folder / "run" / row["path"])} for row in results["rows"]}
    return rows, results, log


def test_every_progress_bar_counts_its_own_work(compressed):
    """Training epochs, each fine-tune's epochs (named), variants finished of those planned, and
    the blocks of the timed rounds (timed in the worker process here: this one trained on
    train.threads), each on a bar of its own whose total never changes and whose count ends full."""
    _, results, log = compressed
    bars: dict[str, list[tuple[int, int | None]]] = {}
    for what, done, total in log.steps:
        bars.setdefault(what, []).append((done, total))
    for what, counts in bars.items():
        assert len({total for _, total in counts}) == 1, (what, counts)  # its own total, never another's
        assert [done for done, _ in counts] == sorted(done for done, _ in counts), (what, counts)
    assert bars["fine-tuning pruned50"] == [(1, 2), (2, 2)] and bars["fine-tuning clustered8"] == [(1, 1)]
    assert bars["fine-tuning pruned50-pqat"] == [(1, 1)]
    assert {total for _, total in bars["training base"]} == {8}
    variants = {row["id"].split("@")[0] for row in results["rows"]} - {"keras-fp32"}
    assert bars["converting + evaluating"][-1] == (len(variants), len(variants))
    timed = [row for row in results["rows"] if row["target"] == "cpu" and row["status"] == "ok"]
    timings = [w for w in bars if w.startswith("timing cpu")]  # a timing again of unstable rows: a bar of its own
    assert timings[0] == f"timing cpu ({len(timed)} rows x 5 rounds)"
    assert timings[1:] == [f"{timings[0][:-1]}, attempt {n})" for n in range(2, len(timings) + 1)]
    assert len(timings) == sum(r["attempts"] for r in results["retimed"]) - len(results["retimed"]) + 1
    assert all(bars[what][-1] == (5 * len(timed), 5 * len(timed)) for what in timings)
    assert "profiling rows" not in bars  # benchmark.profile false; that bar's count: tests/bench/test_profiles.py
    assert any(line.startswith("  epoch 1/2 (pruned50): loss ") for line in log.lines)  # the fine-tune names its model


@pytest.mark.parametrize("fmt", ["tflite", "onnx", "openvino"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_sparsity_is_in_every_exported_artifact(compressed, fmt, precision):
    rows, *_ = compressed
    pruned, base = rows[f"pruned50-{fmt}-{precision}@cpu"], rows[f"{fmt}-{precision}@cpu"]
    assert pruned["status"] == "ok" and pruned["parent"] == "base"
    assert pruned["weights"]["sparsity"] >= 0.45  # read back from the file, not the Keras model
    assert base["weights"]["sparsity"] < 0.1
    assert pruned["gzip_bytes"] < base["gzip_bytes"]


def test_clusters_are_in_the_artifact(compressed):
    rows, *_ = compressed
    assert rows["clustered8-tflite-fp32@cpu"]["weights"]["max_unique_per_tensor"] <= 8
    assert rows["tflite-fp32@cpu"]["weights"]["max_unique_per_tensor"] > 100


def test_pqat_keeps_sparsity_and_reaches_int8_io(compressed):
    rows, results, _ = compressed
    for fmt in ("tflite", "onnx", "openvino"):
        row = rows[f"pruned50-pqat-{fmt}-int8@cpu"]
        assert row["status"] == "ok", row["reason"]
        assert row["parent"] == "pruned50" and row["weights"]["sparsity"] >= 0.45
        assert row["metrics"]["accuracy"] > 0.8
    assert rows["pruned50-pqat-tflite-int8@cpu"]["settings"]["io_type"] == "int8"
    assert "pruned50-pqat-tflite-fp32@cpu" not in rows
    assert any(item["id"] == "pruned50-pqat-tflite-fp32" for item in results["not_produced"])
    models = {m["name"]: m for m in results["models"]}
    assert models["pruned50-pqat"]["preserve"] == "prune" and models["pruned50"]["exported"]


def test_qat_artifact_has_int8_input_and_output(compressed):
    from ai_edge_litert.interpreter import Interpreter

    rows, *_ = compressed
    interpreter = Interpreter(model_path=rows["pruned50-pqat-tflite-int8@cpu"]["path"])
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
