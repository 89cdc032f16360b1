"""The gpu target's Keras 3 path, on the CPU: the model exported to a Keras 3 file, run by the
device runner in a process of its own on Keras 3's JAX backend (EDGEKIT_GPU_ALLOW_CPU=1 is the
test mode that lets it run without a GPU). Without the test mode and without a GPU the row is
skipped with one line naming what was tried (the contract test covers that form too).

jax[cpu] comes with the test extra; PyTorch does not (its wheels are hundreds of MB), so the
torch backend is covered only where torch is installed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.targets import gpu as gpu_target
from edgekit.targets.gpu import GpuTarget
from edgekit.variant import Variant
from tests.conftest import TINY_RECIPE

SPEC = SimpleNamespace(warmup=5, runs=50, min_time_s=0.0, threads=1, rounds=5)
HAS_JAX = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="jax is not installed (pip install -e '.[test]')")


def _jax_sees_a_gpu() -> bool:
    """Asked in a process of its own: importing jax here would take the GPU's memory."""
    import subprocess

    probe = "import jax; print(any(d.platform != 'cpu' for d in jax.devices()))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    return done.stdout.strip().endswith("True")


@pytest.fixture
def keras_variant(tiny_model):
    from edgekit.runtimes.keras import open_session

    return Variant(format="keras", precision="fp32", session=open_session(tiny_model, 1))


@pytest.fixture
def test_mode(monkeypatch):
    monkeypatch.setenv(gpu_target.BACKEND_ENV, "jax")
    monkeypatch.setenv(gpu_target.ALLOW_CPU_ENV, "1")


# --------------------------------------------------------------------------- the export


def _zoo_model(arch, shape, seed=0):
    """A zoo model with random, non-trivial weights (every weight moved off its initial value)."""
    from edgekit.models import ZOO

    model = ZOO[arch](shape, 3, task="classification")
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("arch, shape", [("transformer", (12, 3)), ("lstm", (12, 3)), ("dscnn", (20, 3))])
def test_zoo_models_export_with_their_outputs(arch, shape, tmp_path):
    """A custom zoo layer, MultiHeadAttention's call arguments, Keras 2-only LSTM and depthwise
    arguments: each translates, and the file gives the model's outputs."""
    from edgekit.convert.keras3 import export
    from edgekit.runtimes.keras3 import load

    model = _zoo_model(arch, shape)
    x = np.random.default_rng(1).random((16, *shape), dtype=np.float32)
    info = export(model, tmp_path / "m.keras", x)
    assert info["max_abs_diff"] <= info["tolerance"] and info["keras"].startswith("3.")
    reference = model(x, training=False).numpy()
    out = np.asarray(load(tmp_path / "m.keras")(x, training=False))
    np.testing.assert_allclose(out, reference, atol=1e-5)  # float32 reorderings only
    assert np.abs(reference).max() > 0.01  # the weights were not all zeros


def test_a_layer_that_does_not_translate_is_refused_in_one_line(tmp_path):
    import tf_keras as keras

    from edgekit.convert.keras3 import ExportError, export

    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Lambda(lambda t: t * 2)(keras.layers.Dense(3)(x)))
    with pytest.raises(ExportError) as err:
        export(model, tmp_path / "m.keras", np.zeros((2, 4), np.float32))
    assert "Lambda" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "m.keras").exists()


def test_outputs_that_differ_are_refused(tmp_path, monkeypatch):
    """The comparison is the safety net of every dropped argument: break the weight copy and
    the export must refuse."""
    import tf_keras as keras

    from edgekit.convert import keras3

    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(3)(x))
    monkeypatch.setattr(keras3, "_copy_weights", lambda source, target: None)  # Keras 3 keeps its own init
    with pytest.raises(keras3.ExportError, match="other outputs"):
        keras3.export(model, tmp_path / "m.keras", np.ones((4, 4), np.float32))


# --------------------------------------------------------------------------- the session, shipped


def test_the_session_is_shippable_python_3_7():
    """Like every shipped session (tests/targets/test_parity.py): Python 3.7, and at module level
    the standard library, numpy and edgekit.runtimes only."""
    import ast
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "edgekit" / "runtimes" / "keras3.py").read_text()
    tree = ast.parse(source, feature_version=(3, 7))
    allowed = set(sys.stdlib_module_names) | {"numpy", "edgekit"}
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert {a.name.split(".")[0] for a in node.names} <= allowed
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert node.module.split(".")[0] in allowed and (not node.module.startswith("edgekit")
                                                            or node.module == "edgekit.runtimes")
    assert "from __future__ import annotations" in source


@needs_jax
def test_the_runner_runs_the_file_on_jax_without_tensorflow_or_edgekit(tiny_model, digits, tmp_path):
    """What a GPU machine without TensorFlow gets: the runner, the shipped session package and
    the file, in a Python where tensorflow, tf_keras and pydantic cannot be imported."""
    import os
    import subprocess

    from edgekit.convert.keras3 import export
    from edgekit.targets import job as jobs
    from edgekit.targets.runner import decode_array

    x, _ = digits
    model_file = tmp_path / "keras3-fp32.keras"
    export(tiny_model, model_file, x[:32])
    folder = tmp_path / "device"
    files = jobs.job_files(gpu_target.KERAS3, [model_file], ["jax"], x[:4], x[1400:1450], warmup=2, runs=5,
                           options={"allow_cpu": True, "throughput_batch": 8, "throughput_min_time_s": 0.05})
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content.read_bytes() if hasattr(content, "read_bytes") else content)
    code = ("import runpy, sys\n"
            "for m in ('tensorflow', 'tf_keras', 'pydantic'): sys.modules[m] = None\n"
            "sys.argv = ['runner.py', '--in-process', 'job.json']\n"
            "runpy.run_path('runner.py', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, timeout=300, check=False,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    payload = jobs.result_payload(done.stdout)
    assert payload and "error" not in payload, (payload, done.stderr[-2000:])
    assert payload["session_file"] == str(folder / "edgekit" / "runtimes" / "keras3.py")
    outputs = decode_array(payload["outputs"])
    assert np.abs(outputs - tiny_model.predict(x[1400:1450], verbose=0)).max() < 1e-4
    assert payload["settings"]["throughput"]["batch"] == 8 and len(payload["latencies_ms"]) == 5


# --------------------------------------------------------------------------- the target


@needs_jax
def test_test_mode_runs_the_keras3_file_on_jax_in_its_own_process(keras_variant, digits, test_mode):
    x, _ = digits
    eval_x = x[1400:1500]
    target = GpuTarget()
    m = target.measure(keras_variant, SPEC, list(x[:4]), eval_x)
    assert m.status == "ok", m.reason
    assert len(m.latencies_ms) >= SPEC.runs and all(t > 0 and np.isfinite(t) for t in m.latencies_ms)
    # THE timing loop in the runner process, in the recipe's rounds
    assert len(m.rounds_ms) == SPEC.rounds and sum(len(r) for r in m.rounds_ms) == len(m.latencies_ms)
    host = keras_variant.session.predict(eval_x)
    assert m.outputs.dtype == np.float32 and m.outputs.shape == host.shape
    assert np.abs(m.outputs - host).max() < 1e-4  # the same float32 model, another compiler
    # Never a GPU number: the row says where it ran.
    assert m.settings["device"] == "cpu (test mode)" and m.settings["test_mode"] is True
    assert m.settings["backend"] == "jax" and "CPU test mode" in m.runtime and "jax" in m.runtime
    throughput = m.settings["throughput"]
    assert throughput["batch"] == gpu_target.THROUGHPUT_BATCH and throughput["samples_per_s"] > 0
    json.dumps(m.settings)
    env = target.environment()
    assert env["keras3"]["backend"] == "jax" and env["keras3"]["jax"] and env["keras3"]["device"] == "cpu (test mode)"
    assert "nvidia_smi" in env
    print(f"keras3 jax cpu (test mode): p50 {np.median(m.latencies_ms) * 1e3:.1f} us, "
          f"batch {throughput['batch']}: {throughput['samples_per_s']:.0f} samples/s")


@needs_jax
def test_without_a_gpu_and_without_test_mode_the_row_is_skipped(keras_variant, digits, monkeypatch):
    if _jax_sees_a_gpu():
        pytest.skip("jax sees a GPU here")
    monkeypatch.setenv(gpu_target.BACKEND_ENV, "jax")
    monkeypatch.delenv(gpu_target.ALLOW_CPU_ENV, raising=False)
    x, _ = digits
    m = GpuTarget().measure(keras_variant, SPEC, list(x[:2]), x[1400:1410])
    assert m.status == "skipped" and "\n" not in m.reason
    assert "no GPU visible to jax" in m.reason and not m.latencies_ms and m.outputs is None


def test_every_backend_tried_is_named_when_none_runs(keras_variant, digits, monkeypatch):
    """No backend module at all (a Python without them): skipped, each named."""
    monkeypatch.delenv(gpu_target.BACKEND_ENV, raising=False)
    monkeypatch.delenv(gpu_target.ALLOW_CPU_ENV, raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(gpu_target.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("jax", "torch") else real(name, *a))
    monkeypatch.setattr(GpuTarget, "_tensorflow", lambda self, *a: "tensorflow 2.x sees no GPU")
    x, _ = digits
    m = GpuTarget().measure(keras_variant, SPEC, list(x[:2]), x[1400:1410])
    assert m.status == "skipped" and "\n" not in m.reason
    assert all(word in m.reason for word in ("tensorflow", "jax not installed", "torch not installed"))


def test_an_unknown_backend_is_one_line(keras_variant, digits, monkeypatch):
    monkeypatch.setenv(gpu_target.BACKEND_ENV, "mxnet")
    x, _ = digits
    m = GpuTarget().measure(keras_variant, SPEC, list(x[:2]))
    assert m.status == "failed" and "EDGEKIT_GPU_BACKEND" in m.reason and "jax" in m.reason


@needs_jax
def test_the_bench_cache_key_knows_the_backend_choice(monkeypatch):
    """A measurement made in test mode (or on one backend) must never come back for another."""
    target = GpuTarget()
    monkeypatch.delenv(gpu_target.ALLOW_CPU_ENV, raising=False)
    plain = target.cache_identity()
    monkeypatch.setenv(gpu_target.ALLOW_CPU_ENV, "1")
    assert target.cache_identity() != plain
    json.dumps(plain)


# --------------------------------------------------------------------------- in a build


@needs_jax
@pytest.mark.slow
def test_a_build_in_test_mode_has_an_ok_gpu_row_with_its_own_metrics(write_recipe, tmp_path, test_mode):
    text = TINY_RECIPE.replace("quantize:\n", "quantize:\n  precisions: [fp32]\n")
    recipe = write_recipe(text + "targets: [cpu, gpu]\nexport: {formats: [onnx]}\n")
    result = CliRunner().invoke(cli_group(), ["build", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    row, cpu = rows["keras-fp32@gpu"], rows["keras-fp32@cpu"]
    assert row["status"] == "ok", row["reason"]
    assert row["latency_ms"]["p50"] > 0 and row["settings"]["device"] == "cpu (test mode)"
    assert row["metrics"]["accuracy"] == pytest.approx(cpu["metrics"]["accuracy"], abs=0.005)
    assert row["parity"]["top1_agreement"] >= 0.99
    assert row["settings"]["throughput"]["samples_per_s"] > 0
    assert results["targets"]["gpu"]["keras3"]["backend"] == "jax"
    assert rows["onnx-fp32@gpu"]["status"] == "skipped"

    # benchmarks/gpu_baseline.py reads such a build into its table: the gpu row with its interval
    # and throughput, compared with the fastest cpu row of the same build.
    script = _gpu_baseline_script()
    lines = {line["id"]: line for line in script.summarize({"recipe": "tiny", "results": results})}
    gpu = lines["keras-fp32@gpu"]
    assert gpu["device"] == "cpu (test mode)" and gpu["backend"] == "jax"
    low, high = gpu["p50_ci_ms"]
    assert low <= gpu["p50_ms"] <= high and gpu["throughput_batch"] == gpu_target.THROUGHPUT_BATCH
    fastest = min((r for r in results["rows"] if r["target"] == "cpu" and r["status"] == "ok"),
                  key=lambda r: r["latency_ms"]["p50"])
    assert gpu["vs_fastest_cpu"]["id"] == fastest["id"]
    assert gpu["vs_fastest_cpu"]["gpu_over_cpu"] == pytest.approx(row["latency_ms"]["p50"] / fastest["latency_ms"]["p50"])
    assert lines[fastest["id"]]["fastest_cpu"] and "the p50 of the fastest cpu row" in script.table(list(lines.values()))


def _gpu_baseline_script():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_baseline.py"
    spec = importlib.util.spec_from_file_location("gpu_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_jax
def test_the_gpu_baseline_script_reads_what_this_machine_has():
    """Its discovery asks each runtime in a fresh process and reads the answer: here, no GPU
    anywhere (CI has none), the CPU provider present, jax's devices named."""
    script = _gpu_baseline_script()
    found = script.discover(timeout=120, only=("onnxruntime", "jax"))
    assert "CPUExecutionProvider" in found["onnxruntime"]["providers"]
    visible = script.gpu_visible(found)
    if _jax_sees_a_gpu():
        pytest.skip("a GPU is visible here")
    assert visible["onnxruntime"] is False and visible["jax"] is False, found
    assert found["jax"]["devices"] and all(d.startswith("cpu") for d in found["jax"]["devices"])
    assert script.gpu_visible({"jax": {"devices": ["gpu:NVIDIA H100"]}, "torch": {"cuda_available": True}}) == {
        "tensorflow": False, "jax": True, "torch": True, "onnxruntime": False}


def cli_group():
    from edgekit.cli import cli

    return cli
