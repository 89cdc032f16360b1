"""The stage cache: reruns redo only what changed, killed builds resume, Ctrl-C writes what it has.

Every check is on what ran (results.json "reused", manifest.json), never on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import cli

RECIPE = """
name: cached
seed: {seed}
data: {{source: digits}}
model: {{arch: mlp, params: {{hidden: [32]}}}}
train: {{epochs: {epochs}, learning_rate: 0.01, early_stopping_patience: 0}}
quantize: {{calibration_samples: 32}}
export: {{formats: {formats}}}
benchmark: {{warmup: 1, runs: {runs}, inputs: 2}}
"""


def _recipe(folder: Path, seed=0, epochs=3, formats="[tflite]", runs=5) -> Path:
    path = folder / f"r-{seed}-{epochs}-{formats.strip('[]').replace(', ', '_')}-{runs}.yaml"
    path.write_text(RECIPE.format(seed=seed, epochs=epochs, formats=formats, runs=runs))
    return path


def _build(recipe: Path, out: Path, cache: Path, *extra: str) -> dict:
    result = CliRunner(env={"EDGEKIT_CACHE_DIR": str(cache)}).invoke(cli, ["build", str(recipe), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def _table(results: dict) -> list[tuple]:
    """Everything a user compares in the table, latency and size aside (see _same_sizes)."""
    return [(r["id"], r["status"], json.dumps(r["metrics"], sort_keys=True)) for r in results["rows"]]


def _same_sizes(a: dict, b: dict) -> bool:
    """Sizes within 64 bytes: two processes write files a few bytes apart (Keras stores the save
    time in a .keras file; traced function names carry a per-process counter into .tflite)."""
    return all(abs((x["size_bytes"] or 0) - (y["size_bytes"] or 0)) <= 64 for x, y in zip(a["rows"], b["rows"]))


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    cache = folder / "cache"
    results = _build(_recipe(folder), folder / "run1", cache)
    return folder, cache, results


def test_a_first_build_computes_everything(first):
    _, _, results = first
    assert all(not names for names in results["reused"].values())


def test_an_unchanged_rerun_reuses_every_stage(first):
    folder, cache, results = first
    again = _build(_recipe(folder), folder / "run2", cache)
    assert again["reused"]["train"] == ["base"]
    assert sorted(again["reused"]["convert"]) == ["tflite-fp32", "tflite-int8"]
    assert len(again["reused"]["bench"]) == 3
    assert _table(again) == _table(results)
    assert [r["size_bytes"] for r in again["rows"]] == [r["size_bytes"] for r in results["rows"]]  # the very same files
    manifest = json.loads((folder / "run2" / "manifest.json").read_text())
    assert all(event["reused"] for event in manifest["stages"])
    assert {a["id"] for a in manifest["artifacts"]} == {"keras-fp32", "tflite-fp32", "tflite-int8"}


def test_changing_benchmark_settings_only_rebenchmarks(first):
    folder, cache, _ = first
    results = _build(_recipe(folder, runs=7), folder / "run3", cache)
    assert results["reused"]["train"] == ["base"] and len(results["reused"]["convert"]) == 2
    assert results["reused"]["bench"] == []
    assert all(row["latency_ms"]["runs"] == 7 for row in results["rows"])


def test_adding_a_format_converts_only_that_format(first):
    folder, cache, _ = first
    results = _build(_recipe(folder, formats="[tflite, onnx]"), folder / "run4", cache)
    assert sorted(results["reused"]["convert"]) == ["tflite-fp32", "tflite-int8"]
    manifest = json.loads((folder / "run4" / "manifest.json").read_text())
    computed = sorted(e["name"] for e in manifest["stages"] if e["stage"] == "convert" and not e["reused"])
    assert computed == ["onnx-fp32", "onnx-int8"]


def test_changing_the_seed_retrains(first):
    folder, cache, _ = first
    results = _build(_recipe(folder, seed=5), folder / "run5", cache)
    assert results["reused"]["train"] == [] and results["reused"]["convert"] == []


def test_fresh_ignores_the_cache(first):
    folder, cache, _ = first
    results = _build(_recipe(folder), folder / "run6", cache, "--fresh")
    assert all(not names for names in results["reused"].values())


def test_cache_info_and_clear(tmp_path):
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(tmp_path / "c")})
    (tmp_path / "c" / "train" / "k1").mkdir(parents=True)
    (tmp_path / "c" / "train" / "k1" / "model.keras").write_bytes(b"x" * 10)
    info = runner.invoke(cli, ["cache", "info"])
    assert info.exit_code == 0 and "train" in info.output and "1 entries" in info.output
    cleared = runner.invoke(cli, ["cache", "clear"])
    assert "removed 1 entries" in cleared.output
    assert "empty" in runner.invoke(cli, ["cache", "info"]).output


def _start(recipe: Path, out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for(process: subprocess.Popen, marker: str) -> None:
    for line in process.stdout:
        if marker in line:
            return
    pytest.fail(f"the build ended before printing {marker!r}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted build of the kill tests' recipe, with its own cache."""
    folder = tmp_path_factory.mktemp("reference")
    return _build(_recipe(folder, epochs=40, runs=400), folder / "run", folder / "cache")


@pytest.mark.parametrize("marker", ["epoch 3/", "[bench] tflite-fp32"])
def test_a_build_killed_with_sigkill_resumes_to_the_same_table(tmp_path, reference, marker):
    recipe, cache = _recipe(tmp_path, epochs=40, runs=400), tmp_path / "cache"
    process = _start(recipe, tmp_path / "run", cache)
    _wait_for(process, marker)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    results = _build(recipe, tmp_path / "run", cache)
    assert _table(results) == _table(reference) and _same_sizes(results, reference)
    if marker.startswith("[bench]"):  # training and conversion had finished: not redone
        assert results["reused"]["train"] == ["base"]
        assert sorted(results["reused"]["convert"]) == ["tflite-fp32", "tflite-int8"]
    else:  # killed mid-training: nothing was cached, so it trains again
        assert results["reused"]["train"] == []


def test_ctrl_c_writes_partial_results_and_exits_130(tmp_path):
    recipe = _recipe(tmp_path, epochs=40, runs=3000)
    process = _start(recipe, tmp_path / "run", tmp_path / "cache")
    _wait_for(process, "[bench] tflite-fp32")
    process.send_signal(signal.SIGINT)
    output = process.communicate()[0]
    assert process.returncode == 130, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "interrupted: partial results in" in errors[0]
    assert "Traceback" not in output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["interrupted"] is True
    statuses = {row["id"]: row["status"] for row in results["rows"]}
    assert statuses["keras-fp32@cpu"] == "ok"
    assert "interrupted" in statuses.values()
