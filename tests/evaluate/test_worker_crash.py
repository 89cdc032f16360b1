"""Every variant is converted and evaluated in a worker process: a native crash there fails that
variant's rows and nothing else; Ctrl-C stops the workers; a cached rebuild starts none."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from tests.conftest import TINY_UNPROFILED, output_until

ROOT = Path(__file__).resolve().parents[2]
WORKER_STARTED = re.compile(r"\[worker\] started process (\d+)")


def _edgekit(args: list[str], **kwargs) -> subprocess.Popen:
    """``edgekit`` in a subprocess that has the test formats in its table (for the exit code,
    and because a crash must be a real one)."""
    return subprocess.Popen([sys.executable, "-m", "tests.evaluate.crashing_format", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is gone too) counts as gone.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.mark.slow
def test_a_native_crash_fails_only_its_own_rows(tmp_path):
    recipe = tmp_path / "crash.yaml"
    recipe.write_text(TINY_UNPROFILED + "export:\n  formats: [crash, tflite]\n")
    run_dir = tmp_path / "run"
    # a stage cache of its own: whatever else ran in this session may have converted these variants
    proc = _edgekit(["build", str(recipe), "--out", str(run_dir)], env={**os.environ, "EDGEKIT_CACHE_DIR": str(tmp_path / "cache")})
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, output
    assert "2 row(s) failed: crash-fp32@cpu, crash-int8@cpu" in output
    results = json.loads((run_dir / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert list(rows) == ["keras-fp32@cpu", "crash-fp32@cpu", "crash-int8@cpu", "tflite-fp32@cpu", "tflite-int8@cpu"]
    assert rows["crash-fp32@cpu"]["status"] == "failed"
    assert rows["crash-fp32@cpu"]["reason"] == (
        "conversion failed: the Crash converter crashed (SIGSEGV); other formats are unaffected")
    assert rows["crash-int8@cpu"]["status"] == "failed"
    assert rows["crash-int8@cpu"]["reason"] == (
        "runtime failed: the Crash runtime crashed (SIGABRT) while evaluating on the test split; "
        "other formats are unaffected")
    # Converted after both crashes, by the worker that replaced the second dead one.
    for row_id in ("keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu"):
        assert rows[row_id]["status"] == "ok", rows[row_id]["reason"]
        assert rows[row_id]["latency_ms"]["p50"] > 0 and rows[row_id]["metrics"]["accuracy"] > 0.8
    assert rows["tflite-fp32@cpu"]["parity"]["max_abs_diff"] < 1e-4
    assert (run_dir / "report.md").exists() and (run_dir / "manifest.json").exists()
    workers = [int(pid) for pid in WORKER_STARTED.findall(output)]
    assert len(workers) == 3, output  # the first, and one replacement per crash
    assert not [pid for pid in workers if _alive(pid)]
    # The worker's cache events reached the build: both tflite variants computed, none reused.
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    computed = {(e["stage"], e["name"]) for e in stages if not e["reused"]}
    assert {("convert", "tflite-fp32"), ("evaluate", "tflite-int8")} <= computed


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_writes_partial_results(tmp_path):
    recipe = tmp_path / "slow.yaml"
    recipe.write_text(TINY_UNPROFILED + "export:\n  formats: [tflite, slow]\n")
    run_dir = tmp_path / "run"
    # A session of its own, so that SIGINT goes to the build's process group as a terminal sends it.
    proc = _edgekit(["build", str(recipe), "--out", str(run_dir)], start_new_session=True)
    lines = output_until(proc, "[convert] slow-fp32")
    time.sleep(0.5)  # inside the converter's sleep
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    workers = [int(pid) for pid in WORKER_STARTED.findall(output)]
    assert workers and not [pid for pid in workers if _alive(pid)]
    results = json.loads((run_dir / "results.json").read_text())
    status = {row["id"]: row["status"] for row in results["rows"]}
    assert status["slow-fp32@cpu"] == "interrupted" and status["slow-int8@cpu"] == "interrupted"
    # Finished in the worker before Ctrl-C: kept with their evaluation.
    tflite = next(row for row in results["rows"] if row["id"] == "tflite-int8@cpu")
    assert tflite["metrics"]["accuracy"] > 0.8


def test_a_cached_rebuild_starts_no_worker(write_recipe, tmp_path):
    # A seed of its own: nothing of this build is in the session's cache yet.
    recipe = write_recipe(TINY_UNPROFILED.replace("seed: 3", "seed: 5") + "export:\n  formats: [tflite]\n")
    first = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert len(WORKER_STARTED.findall(first.output)) == 1  # converted in one worker
    again = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    assert not WORKER_STARTED.findall(again.output), again.output
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert sorted(results["reused"]["convert"]) == ["tflite-fp32", "tflite-int8"]
    # the Keras baseline's evaluation is an entry like every other row's
    assert sorted(results["reused"]["evaluate"]) == ["keras-fp32", "tflite-fp32", "tflite-int8"]
    assert all(row["status"] == "ok" for row in results["rows"])
