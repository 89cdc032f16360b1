"""Quiet builds: a real tiny build in a fresh process (through the Python API, from a dict)
shows edgekit's own lines only; the libraries' chatter lands in the run's build.log. The same
build checks the TensorBoard logs of training and fine-tuning and the results' hparams."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgekit.train import tensorboard as tensorboard_logs

#: lines the libraries print during a build on a machine without a GPU (issue 19)
CHATTER = ("cuInit", "CUDA error", "absl::InitializeLog", "cudart_stub", "fully_quantize:",
           "Created TensorFlow Lite XNNPACK delegate", "Statistics collection", "I0000", "E0000", "W0000")

RECIPE = {
    "name": "quiet", "seed": 1,
    "data": {"source": "digits"},
    "model": {"arch": "mlp", "params": {"hidden": [16]}},
    "train": {"epochs": 2, "batch_size": 64},
    "quantize": {"precisions": ["fp32", "int8"], "calibration_samples": 32},
    "export": {"formats": ["tflite", "onnx", "openvino"]},
    "compress": [{"prune": {"sparsity": 0.5, "epochs": 1}, "precisions": ["fp32"]}],
    "benchmark": {"warmup": 1, "runs": 3, "inputs": 2, "profile": False},
}

_SCRIPT = """
import json, sys
import edgekit
result = edgekit.build(json.loads(sys.argv[1]), out=sys.argv[2])
best = result.best(max_drop=1.0, target="cpu")
print("RESULT " + json.dumps({"rows": len(result.rows), "failed": len(result.failed), "best": best and best["id"],
                              "run_dir": str(result.run_dir)}))
"""


@pytest.fixture(scope="module")
def quiet_build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quiet")
    run_dir = folder / "run"
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(folder / "cache")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the default a user has: no help from the environment
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(RECIPE), str(run_dir)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=folder, check=False)
    return done, run_dir, folder / "cache"


def test_a_build_shows_none_of_the_libraries_chatter(quiet_build):
    done, _, _ = quiet_build
    assert done.returncode == 0, done.stderr[-3000:]
    terminal = done.stdout + done.stderr
    leaked = [line for line in terminal.splitlines() if any(mark in line for mark in CHATTER)]
    assert not leaked, leaked
    # edgekit's own progress still reaches the terminal, and the API's result
    assert "[train]" in done.stderr and "[bench]" in done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["rows"] >= 8 and result["failed"] == 0 and result["best"].endswith("@cpu")


def test_build_log_keeps_the_chatter(quiet_build):
    _, run_dir, _ = quiet_build
    log = (run_dir / "build.log").read_text()
    # TensorFlow's start-up lines (this process and the worker's), the TFLite int8 converter's
    # debug line and LiteRT's delegate line: each made by native code writing to fd 2
    assert "absl::InitializeLog" in log and "fully_quantize:" in log and "XNNPACK delegate" in log


def test_tensorboard_logs_of_training_fine_tuning_and_results(quiet_build):
    pytest.importorskip("tensorboard")  # the test extra has it; without it the build writes no logs
    _, run_dir, _ = quiet_build
    board = run_dir / "tensorboard"
    for model in ("mlp", "pruned50"):  # training and the pruning's fine-tuning, each folder named after its model
        train = next((board / model / "train").glob("events.out.tfevents.*")).read_bytes()
        assert b"epoch_loss" in train and b"keras" in train, model  # per-epoch scalars, the model's graph
        assert list((board / model / "validation").glob("events.out.tfevents.*")), model
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    sessions = {p.name for p in (board / "results").iterdir()}
    assert sessions == {row["id"] for row in rows}
    events = next((board / "results" / "tflite-int8@cpu").glob("events.out.tfevents.*")).read_bytes()
    assert b"hparams" in events and b"p50_ms" in events and b"accuracy" in events


def test_a_cached_build_copies_the_logs_and_no_tensorboard_writes_none(quiet_build, tmp_path, monkeypatch):
    import edgekit

    pytest.importorskip("tensorboard")
    _, first, cache = quiet_build
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(cache))
    lines: list[str] = []
    again = edgekit.build(RECIPE, out=tmp_path / "again", log=lines.append)  # every stage from the cache
    assert again.results["reused"]["train"] == ["base"] and again.results["reused"]["compress"] == ["pruned50"]
    for model in ("mlp", "pruned50"):  # the logs of the training that made the cached models
        names = sorted(p.name for p in (again.run_dir / "tensorboard" / model / "train").iterdir())
        assert names == sorted(p.name for p in (first / "tensorboard" / model / "train").iterdir())
    assert any(line.startswith("[bench]") for line in lines)
    assert not [line for line in lines if line.startswith("[tensorboard]")]  # nothing to say
    edgekit.build(RECIPE, out=tmp_path / "again", tensorboard=False, log=lines.append)
    assert not (tmp_path / "again" / "tensorboard").exists()  # the earlier build's logs are gone too
    # Without the package: one line for the whole build, and the cached logs are still copied.
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    lines.clear()
    edgekit.build(RECIPE, out=tmp_path / "without", log=lines.append)
    said = [line for line in lines if "tensorboard" in line.lower()]
    assert said == [tensorboard_logs.NOT_INSTALLED] and (tmp_path / "without" / "tensorboard" / "mlp").is_dir()


def test_logs_named_after_the_model_and_a_cached_model_without_logs_says_so(tmp_path):
    assert [tensorboard_logs.log_name(s) for s in ("cnn", "models/my model.keras", "net.h5", "my_models:build",
                                                   "/data/exported")] == ["cnn", "my_model", "net", "my_models.build",
                                                                          "exported"]
    entry, lines = tmp_path / "entry", []
    entry.mkdir()  # a cache entry made with --no-tensorboard: no tensorboard/ folder
    tensorboard_logs.restore(entry, tmp_path / "run" / "tensorboard" / "cnn", lines.append, "cnn")
    assert len(lines) == 1 and lines[0].startswith("[tensorboard] cnn: no TensorBoard logs") and "--fresh" in lines[0]
    tensorboard_logs.restore(entry, None, lines.append, "cnn")  # logs off: nothing to say
    assert len(lines) == 1


def test_a_refused_folder_keeps_no_log(tmp_path):
    import edgekit
    from edgekit.errors import InputError

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run\n")
    with pytest.raises(InputError, match="not an edgekit run directory"):
        edgekit.build(RECIPE, out=folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_edgekit_bench_shows_none_of_the_runtimes_chatter(tiny_run, tmp_path):
    """`edgekit bench` in a process of its own: LiteRT's delegate line goes into the .log beside
    --out, never to the terminal; the table and edgekit's own lines still do."""
    model = tiny_run.dir / "artifacts" / "tflite-fp32.tflite"
    done = subprocess.run([sys.executable, "-m", "edgekit", "bench", str(model), "--runs", "5", "--warmup", "1",
                           "--no-profile", "--out", str(tmp_path / "bench.json")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    terminal = done.stdout + done.stderr
    assert not [line for line in terminal.splitlines() if any(mark in line for mark in CHATTER)], terminal
    assert "tflite-fp32.tflite@cpu" in done.stdout and "results: " in done.stdout
    assert "XNNPACK delegate" in (tmp_path / "bench.log").read_text()
