"""A fully cached rebuild imports no TensorFlow and writes the first build's rows; train.threads
is keyed and recorded; a changed recipe or data file still recomputes what it should.

Every check is on what ran (results.json ``reused``, the build's own report of its imports),
never on timing: the speed goals are shown by benchmarks/pipeline_speed.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import TRAINING_MODULES, cli


def _imports(stderr: str) -> dict[str, bool]:
    line = next(line for line in stderr.splitlines() if line.startswith("[debug] imported:"))
    return {name: value == "yes" for name, value in re.findall(r"(\w+)=(yes|no)", line)}


@pytest.mark.slow
def test_a_fully_cached_rebuild_imports_no_tensorflow_and_writes_the_same_rows(tiny_run, tmp_path):
    """The shared tiny build filled its own cache; the same recipe again, in a process of its own
    (`python -m edgekit`, the console program's exit path), takes every stage from it."""
    out = tmp_path / "again"
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(tiny_run.dir.parent / "cache"), "EDGEKIT_DEBUG_IMPORTS": "1"}
    done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(tiny_run.recipe), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "results: " in done.stdout  # written and flushed before the process ended itself
    imported = _imports(done.stderr)
    assert not [name for name in TRAINING_MODULES if imported[name]], done.stderr
    first, again = tiny_run.results, json.loads((out / "results.json").read_text())
    assert again["reused"]["data"] and again["reused"]["train"] == ["base"]
    assert "keras-fp32" in again["reused"]["evaluate"]  # the baseline's metrics and outputs are an entry too
    converted = {e["name"] for e in json.loads((tiny_run.dir / "manifest.json").read_text())["stages"]
                 if e["stage"] == "convert"}
    assert converted and set(again["reused"]["convert"]) == converted
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"] and all(event["reused"] for event in manifest["stages"])
    fields = ("id", "status", "reason", "metrics", "delta", "parity", "latency_ms", "size_bytes", "gzip_bytes", "runtime")
    assert [{k: r.get(k) for k in fields} for r in again["rows"]] == [{k: r.get(k) for k in fields} for r in first["rows"]]
    assert again["model"] == first["model"] and again["train"]["threads"] == first["train"]["threads"]
    assert again["train"]["tensorflow_threads"] is None  # TensorFlow never started
    for row in again["rows"]:  # every artifact, the baseline's model too, is in the new run directory
        assert (out / row["path"]).exists(), row["id"]
    assert (out / "report.html").exists() and (out / "plots" / "sizes.png").exists()


COMPRESS_RECIPE = """
name: compressed
seed: 0
data: {source: digits}
model: {arch: cnn, params: {filters: [4, 8], dense: 16}}
train: {epochs: 2, learning_rate: 0.01, early_stopping_patience: 0}
quantize: {precisions: [fp32, int8], calibration_samples: 32}
compress:
  - prune: {sparsity: 0.5, epochs: 1, learning_rate: 0.001}
    precisions: [fp32]
  - qat: {epochs: 1, learning_rate: 0.0005}
export: {formats: [tflite]}
benchmark: {warmup: 1, runs: 5, inputs: 2, profile: false}
"""


@pytest.mark.slow
def test_a_cached_rebuild_with_compressed_models_loads_none_of_them(tmp_path):
    """Pruned and QAT models, their Keras metrics and artifacts all come from the cache: nothing
    loads a model, so nothing imports TensorFlow or tfmot."""
    recipe = tmp_path / "compressed.yaml"
    recipe.write_text(COMPRESS_RECIPE)
    env = {"EDGEKIT_CACHE_DIR": str(tmp_path / "cache")}
    first = CliRunner(env=env).invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(tmp_path / "b")],
                          env={**os.environ, **env, "EDGEKIT_DEBUG_IMPORTS": "1"}, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not [name for name in TRAINING_MODULES if _imports(done.stderr)[name]], done.stderr
    before, after = (json.loads((tmp_path / run / "results.json").read_text()) for run in ("a", "b"))
    assert sorted(after["reused"]["compress"]) == ["pruned50", "qat"]
    assert [m.get("keras_metrics") for m in after["models"]] == [m.get("keras_metrics") for m in before["models"]]
    assert [(r["id"], r["status"], r["metrics"]) for r in after["rows"]] == [
        (r["id"], r["status"], r["metrics"]) for r in before["rows"]]


THREADS_RECIPE = """
name: threads
seed: 1
data: {{source: digits, test_fraction: {test_fraction}}}
model: {{arch: mlp, params: {{hidden: [8]}}}}
train: {{epochs: 1, learning_rate: 0.01, early_stopping_patience: 0{threads}}}
quantize: {{precisions: [fp32], calibration_samples: 16}}
export: {{formats: [tflite]}}
benchmark: {{warmup: 1, runs: 3, inputs: 2, profile: false}}
"""


def _build(folder: Path, name: str, threads: str = "", test_fraction: float = 0.2) -> dict:
    recipe = folder / f"{name}.yaml"
    recipe.write_text(THREADS_RECIPE.format(threads=threads, test_fraction=test_fraction))
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(folder / "cache"), "EDGEKIT_WORKERS": "0"})
    result = runner.invoke(cli, ["build", str(recipe), "--out", str(folder / name)])
    assert result.exit_code == 0, result.output
    return json.loads((folder / name / "results.json").read_text())


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threads")
    return folder, _build(folder, "one", ", threads: 1")


def test_train_threads_goes_into_the_train_key_and_is_recorded(one_thread):
    folder, first = one_thread
    assert first["train"]["threads"] == 1 and first["reused"]["train"] == []
    two = _build(folder, "two", ", threads: 2")
    assert two["train"]["threads"] == 2
    assert two["reused"]["train"] == [] and two["reused"]["convert"] == []  # retrained, so reconverted
    assert two["reused"]["data"] == ["digits"]  # the data did not change
    every_core = _build(folder, "null", ", threads: null")
    assert every_core["train"]["threads"] == os.cpu_count()
    # null means every core: the key holds the number, so it is the build above on a 2-core machine
    assert every_core["reused"]["train"] == (["base"] if os.cpu_count() == 2 else [])
    again = _build(folder, "one-again", ", threads: 1")
    assert again["reused"]["train"] == ["base"] and again["train"]["threads"] == 1


def test_changed_data_splits_recompute_the_data_the_model_and_the_baseline(one_thread):
    folder, first = one_thread
    changed = _build(folder, "split", ", threads: 1", test_fraction=0.25)
    assert changed["reused"]["data"] == [] and changed["reused"]["train"] == []
    assert "keras-fp32" not in changed["reused"]["evaluate"]
    assert changed["rows"][0]["id"] == "keras-fp32@cpu" and changed["rows"][0]["status"] == "ok"
    assert changed["data"]["splits"]["test"] != first["data"]["splits"]["test"]


# --------------------------------------------------------------------------- the data entry


def _spec(**fields):
    from edgekit.recipe.schema import DataSpec

    return DataSpec(**fields)


def test_the_cached_dataset_is_the_loaded_one(tmp_path):
    from edgekit.cache import Cache
    from edgekit.data import load_dataset
    from edgekit.data.stage import cached_dataset

    cache = Cache(root=tmp_path / "cache")
    spec = _spec(source="digits", normalize="standard")
    _, reused = cached_dataset(spec, 0, 32, "classification", cache)
    again, reused_again = cached_dataset(spec, 0, 32, "classification", cache)
    assert (reused, reused_again) == (False, True)
    loaded = load_dataset(spec, 0, 32, task="classification")
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "x_calib"):
        assert getattr(again, name).dtype == getattr(loaded, name).dtype
        np.testing.assert_array_equal(getattr(again, name), getattr(loaded, name))
    assert again.class_names == loaded.class_names and again.info == json.loads(json.dumps(loaded.info))
    assert again.embedded == loaded.embedded
    np.testing.assert_array_equal(again.normalization.shift, loaded.normalization.shift)
    np.testing.assert_array_equal(again.normalization.scale, loaded.normalization.scale)


def test_the_data_key_follows_the_recipe_and_the_file(tmp_path):
    from edgekit.data.stage import dataset_key

    base = dataset_key(_spec(source="digits"), 0, 32, "classification")
    assert base == dataset_key(_spec(source="digits"), 0, 32, "classification")
    assert base != dataset_key(_spec(source="digits"), 1, 32, "classification")
    assert base != dataset_key(_spec(source="digits"), 0, 64, "classification")
    assert base != dataset_key(_spec(source="digits", test_fraction=0.3), 0, 32, "classification")
    assert base != dataset_key(_spec(source="digits", normalize="minmax"), 0, 32, "classification")
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.normal(size=(40, 3)).astype(np.float32), y=np.arange(40) % 2)
    before = dataset_key(_spec(source="npz", path=path), 0, 8, "classification")
    np.savez(path, x=rng.normal(size=(40, 3)).astype(np.float32), y=np.arange(40) % 2)
    assert dataset_key(_spec(source="npz", path=path), 0, 8, "classification") != before  # same name, new content
    assert dataset_key(_spec(source="mnist"), 0, 8, "classification") is None  # the Keras cache: loaded every time


# --------------------------------------------------------------------------- the plots


def test_plots_are_redrawn_when_what_they_show_changes(tiny_run, tmp_path):
    from edgekit.report import html

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.dir, run_dir)
    results = tiny_run.results
    latencies = json.loads((run_dir / "latency.json").read_text())["rows"]
    html.write(results, run_dir, latencies)  # records what its plots were drawn from
    key = html._plots_key(results, html.artifact_sizes(results["rows"], run_dir), html.pareto_front(results), latencies)
    assert html._drawn_before(run_dir, key) is not None
    changed = json.loads(json.dumps(results))
    changed["rows"][1]["latency_ms"]["p50"] *= 2
    assert html._plots_key(changed, html.artifact_sizes(changed["rows"], run_dir), html.pareto_front(changed),
                           latencies) != key
    (run_dir / "plots" / "sizes.png").write_bytes(b"not the drawn picture")
    assert html._drawn_before(run_dir, key) is None  # a changed file is drawn again
