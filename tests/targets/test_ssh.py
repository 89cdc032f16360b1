"""SSH devices, for real: an OpenSSH server on 127.0.0.1 and a device Python with nothing but
numpy<2 and tflite-runtime 2.14 (an older runtime than the converter's).

The ``device`` tests need /usr/sbin/sshd, the ssh client and that device Python
(EDGEKIT_TEST_DEVICE_PYTHON, default .device-venv/bin/python); .ci/run provides all three and
they skip cleanly without them. The other tests here (profiles, the runner run locally, the
GPU target without a GPU, bench on the cpu) need none of it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli import HEAVY_MODULES, cli
from edgekit.errors import DeviceProfileError
from edgekit.formats import FORMATS
from edgekit.targets import job as jobs
from edgekit.targets import profiles, ssh, ssh_transport
from edgekit.targets.runner import RESULT_MARKER, decode_array
from tests.conftest import TINY_RECIPE
from tests.targets.sshd import ROOT, device_profile, device_python, free_port

# --------------------------------------------------------------------------- artifacts and the runner


@pytest.fixture(scope="module")
def artifacts(tiny_artifacts):
    """tflite fp32/int8 and onnx fp32/int8 files of the tiny CNN (the session's shared conversions)."""
    return {f"{fmt}-{precision}": path for (fmt, precision), path in tiny_artifacts.items() if fmt in ("tflite", "onnx")}


def write_job(folder: Path, artifact: Path, fmt: str, eval_x, bench_x, modules=None, runs=7) -> Path:
    """Lay out what a device receives (runner, session package, job, artifact, inputs) in ``folder``."""
    files = jobs.job_files(FORMATS[fmt], [artifact], modules or list(FORMATS[fmt].runtime_packages), bench_x, eval_x,
                           warmup=2, runs=runs)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content.read_bytes() if isinstance(content, Path) else content)
    return folder / "job.json"


def run_runner(python: str, artifact: Path, fmt: str, eval_x, bench_x, folder: Path, modules=None, runs=7):
    """Run the shipped runner as a subprocess, the way a device runs it; return its payload."""
    job = write_job(folder, artifact, fmt, eval_x, bench_x, modules, runs)
    done = subprocess.run([python, str(folder / jobs.RUNNER_NAME), str(job)], capture_output=True, text=True, timeout=120, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    assert lines, done.stderr
    payload = json.loads(lines[-1][len(RESULT_MARKER):])
    assert "error" not in payload, payload
    return payload


@pytest.mark.parametrize("name", ["tflite-int8", "onnx-fp32", "onnx-int8"])
def test_runner_gives_the_local_sessions_outputs(artifacts, digits, tmp_path, name):
    """The runner runs edgekit/runtimes itself: same prepare (int8 input quantization with the
    tensor's own scale and zero point), same decode, same outputs to the bit."""
    x, _ = digits
    fmt = FORMATS[name.split("-")[0]]
    local = fmt.load_runtime()(artifacts[name], 1).predict(x[1400:1500])
    payload = run_runner(sys.executable, artifacts[name], fmt.name, x[1400:1500], x[:4], tmp_path)
    remote = decode_array(payload["outputs"])
    assert remote.dtype == np.float32 and remote.shape == local.shape
    np.testing.assert_array_equal(remote, local)
    assert len(payload["latencies_ms"]) == 7 and min(payload["latencies_ms"]) > 0
    assert payload["input_shape"] == [1, 8, 8, 1]
    if name == "tflite-int8":
        # A garbage quantization would still produce outputs; these must be the fp32 model's decisions.
        fp32 = FORMATS["tflite"].load_runtime()(artifacts["tflite-fp32"], 1).predict(x[1400:1500])
        assert np.mean(remote.argmax(1) == fp32.argmax(1)) >= 0.95


def test_timing_loop_is_shared():
    from edgekit.bench import stats as bench
    from edgekit.bench import timing as runner_standalone

    assert bench.time_session is runner_standalone.time_session


def test_device_python_has_only_numpy_and_tflite_runtime():
    python = device_python()
    code = ("import importlib.util as u, numpy, tflite_runtime\n"
            "print([m for m in ('tensorflow', 'ai_edge_litert', 'onnxruntime', 'openvino', 'edgekit') if u.find_spec(m)],"
            " numpy.__version__)")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout.split()
    assert out[0] == "[]" and out[1].startswith("1.")


def test_runner_on_tflite_runtime_2_14_matches_litert(artifacts, digits, tmp_path):
    """The old runtime on the device runs what the new converter made, with the same decisions."""
    python = device_python()
    x, _ = digits
    for name in ("tflite-fp32", "tflite-int8"):
        payload = run_runner(python, artifacts[name], "tflite", x[1400:1600], x[:4], tmp_path / name)
        assert payload["runtime"] == "tflite_runtime 2.14.0"
        remote = decode_array(payload["outputs"])
        local = FORMATS["tflite"].load_runtime()(artifacts[name], 1).predict(x[1400:1600])
        assert np.mean(remote.argmax(1) == local.argmax(1)) >= 0.99
        # Loosened for int8: the int8 kernels of tflite-runtime 2.14 and LiteRT 2.3 round differently,
        # up to 8 output steps (8/256) apart on about 0.1% of the values here.
        np.testing.assert_allclose(remote, local, atol=1e-5 if name == "tflite-fp32" else 0.05)


def test_runner_reports_a_missing_runtime_in_one_line(artifacts, digits, tmp_path):
    python = device_python()
    x, _ = digits
    job = write_job(tmp_path, artifacts["onnx-fp32"], "onnx", None, x[:2])
    done = subprocess.run([python, str(tmp_path / jobs.RUNNER_NAME), str(job)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    payload = json.loads(done.stdout.strip().splitlines()[-1][len(RESULT_MARKER):])
    assert payload["kind"] == "runtime_missing"
    assert "onnxruntime" in payload["error"] and "No module named 'onnxruntime'" in payload["error"]


# --------------------------------------------------------------------------- profiles (no ssh)


def _profile(folder: Path, name: str, **fields) -> Path:
    doc = {"host": "127.0.0.1", "user": "pi", "runtimes": ["tflite_runtime"], **fields}
    (folder / "devices").mkdir(parents=True, exist_ok=True)
    path = folder / "devices" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_profile_defaults_and_relative_paths(tmp_path):
    profile = profiles.load_profile(_profile(tmp_path, "pi", identity_file="keys/id", known_hosts="kh"))
    assert profile.name == "pi" and profile.port == 22 and profile.python == "python3"
    assert profile.identity_file == tmp_path / "devices" / "keys" / "id"
    assert profile.known_hosts == tmp_path / "devices" / "kh"
    assert profile.modules_for(FORMATS["tflite"].runtime_packages) == ["tflite_runtime"]
    assert profile.modules_for(FORMATS["onnx"].runtime_packages) == []


@pytest.mark.parametrize("fields, fragment", [
    ({"prot": 22}, 'prot: unknown key (did you mean "port"?)'),
    ({"port": 70000}, "port: expected less than or equal to 65535"),
    ({"runtimes": ["tensorflow"]}, "runtimes[0]: expected 'litert', 'tflite_runtime', 'onnxruntime' or 'openvino'"),
    ({"host": "-oProxyCommand=touch x"}, "host: expected"),
])
def test_profile_errors_are_one_line(tmp_path, fields, fragment):
    with pytest.raises(DeviceProfileError) as info:
        profiles.load_profile(_profile(tmp_path, "pi", **fields))
    assert fragment in info.value.message and "\n" not in info.value.message
    assert info.value.exit_code == 2


def test_profile_kind_is_ssh_by_default_and_an_unknown_kind_is_one_line(tmp_path, write_recipe):
    from edgekit.errors import RecipeError
    from edgekit.recipe.schema import load_recipe

    assert profiles.load_profile(_profile(tmp_path, "old")).kind == "ssh"  # profiles written before kinds
    explicit = profiles.load_profile(_profile(tmp_path, "new", kind="ssh"))
    assert isinstance(explicit, ssh.SshProfile) and explicit.kind == "ssh"
    with pytest.raises(DeviceProfileError) as info:
        profiles.load_profile(_profile(tmp_path, "phone", kind="adb"))
    assert info.value.exit_code == 2 and "\n" not in info.value.message
    from edgekit.targets import profile_kinds

    kinds = ", ".join(profile_kinds())  # every kind a profile may name, from the kinds table
    assert info.value.message.endswith(f"phone.yaml: kind: unknown target kind 'adb'; expected one of: {kinds}")
    assert "ethos-u" in kinds
    with pytest.raises(DeviceProfileError, match=r"kind: unknown target kind 'shh' \(did you mean \"ssh\"\?\)"):
        profiles.load_profile(_profile(tmp_path, "typo", kind="shh"))
    with pytest.raises(RecipeError, match='targets: device "phone": .*phone.yaml: kind: unknown target kind'):
        load_recipe(write_recipe("name: m\nmodel: {arch: mlp}\ntargets: [cpu, phone]\n"))


def test_recipe_targets_accept_device_profiles_next_to_the_recipe(tmp_path, write_recipe):
    from edgekit.errors import RecipeError
    from edgekit.recipe.schema import load_recipe

    _profile(tmp_path, "pi4")
    recipe = load_recipe(write_recipe("name: m\nmodel: {arch: mlp}\ntargets: [cpu, pi4]\n"))
    assert recipe.targets == ["cpu", "pi4"]
    with pytest.raises(RecipeError, match=r'unknown target "pi5" \(did you mean "pi4"\?\); choose from: cpu, gpu, pi4'):
        load_recipe(write_recipe("name: m\nmodel: {arch: mlp}\ntargets: [pi5]\n"))
    _profile(tmp_path, "broken", port="ssh")
    with pytest.raises(RecipeError, match='targets: device "broken": .*broken.yaml: port: expected a valid integer'):
        load_recipe(write_recipe("name: m\nmodel: {arch: mlp}\ntargets: [broken]\n"))


def test_devices_list(tmp_path):
    _profile(tmp_path, "pi4", port=2222)
    _profile(tmp_path, "bad", runtimes=[])
    result = CliRunner().invoke(cli, ["devices", "list", "--devices", str(tmp_path / "devices")])
    assert result.exit_code == 0, result.output
    assert "pi@127.0.0.1:2222" in result.output and "tflite_runtime" in result.output
    assert "bad" in result.output and "INVALID" in result.output and "runtimes" in result.output


def test_devices_check_unknown_device_exits_2(tmp_path):
    _profile(tmp_path, "pi4")
    result = CliRunner().invoke(cli, ["devices", "check", "pi5", "--devices", str(tmp_path / "devices")])
    assert result.exit_code == 2 and 'unknown device "pi5" (did you mean "pi4"?)' in result.output


@pytest.mark.parametrize("args", [["devices", "--help"], ["devices", "list"], ["bench", "--help"]])
def test_device_commands_import_no_heavy_library(args):
    heavy = HEAVY_MODULES
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom edgekit.cli import cli\n"
        f"r = CliRunner().invoke(cli, {args!r})\nassert r.exit_code == 0, r.output\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_remote_command_is_quoted_word_for_word(tmp_path):
    profile = profiles.load_profile(_profile(tmp_path, "pi", identity_file="id"))
    command = ssh_transport.Connection(profile).ssh_command(["python3", "/w d;rm -rf x/$(id)/r.py", "--x"])
    assert command[0] == "ssh" and "StrictHostKeyChecking=yes" in command and "BatchMode=yes" in command
    assert command[-3:-1] == ["--", "pi@127.0.0.1"]
    assert command[-1] == "python3 '/w d;rm -rf x/$(id)/r.py' --x"


# --------------------------------------------------------------------------- rows from device outputs (no ssh)


def test_device_rows_use_the_devices_outputs(tmp_path, monkeypatch):
    """A device row's metrics, delta and parity come from the outputs the device sent back."""
    from edgekit.bench import stage as rows
    from edgekit.variant import Variant

    _profile(tmp_path, "pi")
    labels = np.array([0, 1, 2, 1])
    host_outputs = np.eye(3, dtype=np.float32)[labels]  # the host's (and baseline's) outputs: all right
    device_outputs = np.eye(3, dtype=np.float32)[(labels + 1) % 3]  # the device's: all wrong

    from edgekit.targets.runner import encode_array

    def fake_run(profile, payload, what, log=None, connection=None):
        job = json.loads(payload["job.json"])
        with np.load(io.BytesIO(payload["inputs.npz"])) as arrays:
            assert len(arrays["eval"]) == 4
        [row] = job["rows"]
        assert row["modules"] == ["tflite_runtime"] and row["format"] == "tflite" and "model/0/m.tflite" in payload
        return {"rows": [{"runtime": "tflite_runtime 2.14.0", "settings": {"threads": 1}, "input_shape": [1, 2],
                          "latencies_ms": [0.5, 0.6], "rounds_ms": [[0.5], [0.6]], "interleaved": False,
                          "outputs": encode_array(device_outputs)}],
                "environment": {"python": "3.9.2", "runtimes": {}}, "remote_dir": "/tmp/edgekit-x"}

    monkeypatch.setattr(ssh, "run_payload", fake_run)
    baseline = Variant(format="keras", precision="fp32", metrics={"accuracy": 1.0})
    variant = Variant(format="tflite", precision="fp32", path=tmp_path / "m.tflite", metrics={"accuracy": 1.0},
                      runtime="ai_edge_litert 2.3.0")
    (tmp_path / "m.tflite").write_bytes(b"x")
    recipe = SimpleNamespace(benchmark=SimpleNamespace(inputs=2, warmup=0, runs=2, min_time_s=0, threads=1, rounds=1,
                                                       unstable_spread=0.1),
                             targets=["pi"], path=tmp_path / "recipe.yaml", task="classification", seed=0)
    data = SimpleNamespace(x_test=np.zeros((4, 2), np.float32), y_test=labels)
    out: list = []
    latencies, envs = rows.benchmark([baseline, variant], data, recipe, lambda m: None, host_outputs, rows=out)
    (row,) = out
    assert row["id"] == "tflite-fp32@pi" and row["status"] == "ok"
    assert row["metrics"]["accuracy"] == 0.0 and row["delta"]["accuracy"] == -1.0
    assert row["parity"]["top1_agreement"] == 0.0
    assert row["runtime"] == "tflite_runtime 2.14.0"
    assert latencies["tflite-fp32@pi"] == [0.5, 0.6] and envs["pi"]["python"] == "3.9.2"


# --------------------------------------------------------------------------- gpu (item 1, 8)


def test_speedup_baseline_is_the_gpu_row_when_measured():
    from edgekit.report.rows import add_speedups, speedup_baseline

    def row(row_id, p50):
        fmt, target = row_id.split("-")[0], row_id.split("@")[1]
        return {"id": row_id, "model": "base", "format": fmt, "precision": "fp32", "target": target, "runtime": "x",
                "latency_ms": {"p50": p50} if p50 else None, "notes": [], "speedup_vs_baseline": None}

    rows = [row("keras-fp32@cpu", 4.0), row("keras-fp32@gpu", 1.0), row("tflite-fp32@cpu", 2.0)]
    assert speedup_baseline(rows)["id"] == "keras-fp32@gpu"
    add_speedups(rows)
    assert rows[2]["speedup_vs_baseline"] == pytest.approx(0.5)
    skipped = [row("keras-fp32@cpu", 4.0), row("keras-fp32@gpu", None), row("tflite-fp32@cpu", 2.0)]
    assert speedup_baseline(skipped)["id"] == "keras-fp32@cpu"
    add_speedups(skipped)
    assert skipped[2]["speedup_vs_baseline"] == pytest.approx(2.0)


def test_gpu_onnx_row_is_skipped_without_cuda(artifacts):
    import onnxruntime as ort

    from edgekit.targets.gpu import GpuTarget
    from edgekit.variant import Variant

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime has CUDA here; the gpu-marked test covers it")
    variant = Variant(format="onnx", precision="fp32", path=artifacts["onnx-fp32"])
    spec = SimpleNamespace(warmup=1, runs=2, min_time_s=0, threads=1)
    gpu = GpuTarget()
    assert gpu.supports(variant) and not gpu.supports(Variant(format="onnx", precision="int8"))
    m = gpu.measure(variant, spec, [np.zeros((8, 8, 1), np.float32)])
    assert m.status == "skipped" and "CUDAExecutionProvider" in m.reason and "onnxruntime-gpu" in m.reason


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_baseline_is_timed_and_is_the_speedup_reference(write_recipe, tmp_path):
    recipe = write_recipe(TINY_RECIPE + "targets: [cpu, gpu]\nexport: {formats: [tflite, onnx]}\n")
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert rows["keras-fp32@gpu"]["status"] == "ok", rows["keras-fp32@gpu"]["reason"]
    assert results["speedup_baseline"] == "keras-fp32@gpu"
    assert rows["keras-fp32@gpu"]["metrics"]["accuracy"] == pytest.approx(rows["keras-fp32@cpu"]["metrics"]["accuracy"], abs=0.01)
    assert "speedup = p50 of keras-fp32@gpu (GPU fp32)" in result.output
    assert results["targets"]["gpu"]["tensorflow_gpus"]


# --------------------------------------------------------------------------- bench on the cpu (no ssh)


def test_bench_files_on_the_cpu(artifacts, tmp_path, digits):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", str(artifacts["tflite-int8"]), str(artifacts["onnx-fp32"]),
                                      "--runs", "5", "--warmup", "1", "--no-profile", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "tflite-int8.tflite@cpu" in result.output and "onnx-fp32.onnx@cpu" in result.output
    results = json.loads(out.read_text())
    assert [row["status"] for row in results["rows"]] == ["ok", "ok"]
    assert results["rows"][0]["input_shape"] == [8, 8, 1] and results["rows"][0]["latency_ms"]["runs"] == 5
    np.savez(tmp_path / "x.npz", x=digits[0][:3])
    given = CliRunner().invoke(cli, ["bench", str(artifacts["tflite-int8"]), "--inputs", str(tmp_path / "x.npz"), "--runs", "3",
                                     "--no-profile"])
    assert given.exit_code == 0, given.output
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 5, 5), np.float32))
    bad = CliRunner().invoke(cli, ["bench", str(artifacts["tflite-int8"]), "--inputs", str(tmp_path / "bad.npz")])
    assert bad.exit_code == 2 and "do not fit tflite-int8.tflite, whose input is [1, 8, 8, 1]" in bad.output
    (tmp_path / "m.pb").write_bytes(b"")
    unknown = CliRunner().invoke(cli, ["bench", str(tmp_path / "m.pb")])
    assert unknown.exit_code == 2 and "unknown model file type '.pb'" in unknown.output


# --------------------------------------------------------------------------- a real ssh device


def _slow_python(folder: Path, python: str, seconds: float = 120) -> Path:
    """A device Python whose runner worker (the --in-process child) sleeps ``seconds`` at start-up,
    so a test can kill it mid-run or let it time out. Only that child sleeps."""
    site = folder / "slow-site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(f"import sys, time\nif '--in-process' in sys.argv:\n    time.sleep({seconds})\n")
    wrapper = folder / "slow-python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH='{site}' exec '{python}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def _processes_with(fragment: str) -> list[int]:
    """Our own test processes whose command line contains ``fragment`` (a unique tmp path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if fragment in cmdline and "--in-process" in cmdline:
                pids.append(int(entry.name))
    return pids


class Killer(threading.Thread):
    """Kills, by pid, each runner worker started under one device's work dir: the remote
    process dies mid-run, as under the out-of-memory killer."""

    def __init__(self, fragment: str):
        super().__init__(daemon=True)
        self.fragment, self.killed, self.stop = fragment, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in _processes_with(self.fragment):
                if pid not in self.killed:
                    time.sleep(0.5)  # well inside its run
                    try:
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)


@pytest.fixture(scope="module")
def device_build(ssh_server, tmp_path_factory):
    """One build of the tiny recipe on cpu, gpu, a good device and one device per fault."""
    folder = tmp_path_factory.mktemp("device-build")
    s = ssh_server
    slow = _slow_python(folder, s.python)
    device_profile(folder, "dev", s)
    device_profile(folder, "unreachable", s, port=free_port(), connect_timeout_s=3, backoff_s=0.1)  # retried twice
    device_profile(folder, "badkey", s, identity_file=s.stranger_key)
    device_profile(folder, "impostor", s, known_hosts=s.wrong_known_hosts)
    (folder / "empty_known_hosts").write_text("")
    device_profile(folder, "unknownhost", s, known_hosts=folder / "empty_known_hosts")
    device_profile(folder, "noonnx", s, runtimes=["tflite_runtime", "onnxruntime"])
    device_profile(folder, "killed", s, python=slow)
    device_profile(folder, "hung", s, python=slow, timeout_s=4, retries=0)  # a timeout is retried: not here
    targets = ["cpu", "gpu", "dev", "unreachable", "badkey", "impostor", "unknownhost", "noonnx", "killed", "hung"]
    recipe = folder / "tiny.yaml"
    recipe.write_text(TINY_RECIPE + f"targets: [{', '.join(targets)}]\nexport: {{formats: [tflite, onnx, openvino]}}\n")
    known_before = {p: p.read_bytes() for p in (s.wrong_known_hosts, folder / "empty_known_hosts", s.known_hosts)}
    killer = Killer(str(s.root / "work" / "killed"))
    killer.start()
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(folder / "run")])
    killer.stop.set()
    killer.join()
    results = json.loads((folder / "run" / "results.json").read_text())
    return SimpleNamespace(result=result, results=results, rows={r["id"]: r for r in results["rows"]}, folder=folder,
                           server=s, known_before=known_before, killed=killer.killed)


def _device_rows(build, device):
    return {row_id: row for row_id, row in build.rows.items() if row_id.endswith(f"@{device}")}


@pytest.mark.device
@pytest.mark.slow
def test_build_on_the_device_uses_the_devices_runtime_and_outputs(device_build):
    b = device_build
    assert b.result.exit_code == 1, b.result.output  # the fault devices' rows failed, and said so
    dev = _device_rows(b, "dev")
    assert set(dev) == {f"{fmt}-{p}@dev" for fmt in ("tflite", "onnx", "openvino")
                        for p in FORMATS[fmt].precisions_for(["fp32", "int8"])}
    for precision in ("fp32", "int8"):
        row, host = dev[f"tflite-{precision}@dev"], b.rows[f"tflite-{precision}@cpu"]
        assert row["status"] == "ok", row["reason"]
        assert row["runtime"] == "tflite_runtime 2.14.0" and host["runtime"].startswith("ai_edge_litert")
        assert row["latency_ms"]["runs"] >= 20 and row["latency_ms"]["p50"] > 0
        assert row["metrics"]["accuracy"] == pytest.approx(host["metrics"]["accuracy"], abs=0.01)
        assert row["parity"]["top1_agreement"] >= 0.99
        assert row["delta"]["accuracy"] == pytest.approx(row["metrics"]["accuracy"] - b.rows["keras-fp32@cpu"]["metrics"]["accuracy"])
    # Both tflite artifacts went to the device in one job and were timed there in interleaved
    # rounds, as on the host: their ratio pairs round with round.
    for precision in ("fp32", "int8"):
        timing = dev[f"tflite-{precision}@dev"]["timing"]
        assert timing["interleaved"] and timing["rounds"] == 5 and len(timing["round_p50_ms"]) == 5
    lo, hi = dev["tflite-int8@dev"]["vs_fp32_same_runtime_ci95"]
    assert lo <= dev["tflite-int8@dev"]["vs_fp32_same_runtime"] <= hi
    for fmt, runtime in (("onnx", "onnxruntime"), ("openvino", "openvino")):
        row = dev[f"{fmt}-fp32@dev"]
        assert row["status"] == "skipped" and f"device dev has no runtime for {fmt}" in row["reason"]
        assert f"install {runtime} there" in row["reason"] and row["metrics"] == {}
    env = b.results["targets"]["dev"]
    assert env["runtimes"]["tflite_runtime"] == {"ok": True, "version": "2.14.0"}
    assert env["numpy"].startswith("1.") and env["python"] and env["host"].endswith(f":{b.server.port}")
    assert b.results["targets"]["cpu"]["packages"]["tensorflow"]
    side = b.results["latency_by_target"]["tflite-int8"]
    assert side["dev"]["p50"] == dev["tflite-int8@dev"]["latency_ms"]["p50"] and side["cpu"]["p50"] > 0
    assert "p50 latency by target" in b.result.output and "dev (tflite_runtime 2.14.0)" in b.result.output
    assert "tflite_runtime 2.14.0" in (b.folder / "run" / "report.md").read_text()
    # The run keeps the profiles it used, so its recipe.yaml copy still validates (edgekit check reads it).
    from edgekit.recipe.schema import load_recipe

    assert "dev" in load_recipe(b.folder / "run" / "recipe.yaml").targets
    assert yaml.safe_load((b.folder / "run" / "devices" / "dev.yaml").read_text())["port"] == b.server.port


@pytest.mark.device
@pytest.mark.slow
def test_gpu_rows_skip_cleanly_without_a_gpu(device_build):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible; test_gpu_baseline_is_timed_and_is_the_speedup_reference covers it")
    gpu = _device_rows(device_build, "gpu")
    assert set(gpu) == {"keras-fp32@gpu", "onnx-fp32@gpu"}
    assert all(row["status"] == "skipped" and row["reason"] and row["metrics"] == {} for row in gpu.values())
    assert device_build.results["speedup_baseline"] == "keras-fp32@cpu"
    assert "speedup = p50 of keras-fp32@cpu (CPU fp32)" in device_build.result.output


@pytest.mark.device
@pytest.mark.slow
def test_faulty_devices_fail_their_rows_in_one_line_and_the_rest_completes(device_build):
    b = device_build
    cpu = _device_rows(b, "cpu")
    # 7 rows, 8 where openvino gains its bf16 twin (CPUs with AVX-512 BF16 / AMX)
    # keras, tflite and onnx fp32 + int8, openvino's (a bf16 twin of fp32 on CPUs that have it)
    assert len(cpu) == 5 + len(FORMATS["openvino"].precisions_for(["fp32", "int8"]))
    assert all(row["status"] == "ok" for row in cpu.values())
    expected = {
        "unreachable": "device unreachable: connection refused",
        "badkey": "authentication refused by",
        "impostor": "host key mismatch",
        "unknownhost": "is not in",  # ... known_hosts; refused (never accepted blindly)
        "killed": "the runner process was killed by SIGKILL",
    }
    for device, fragment in expected.items():
        rows = _device_rows(b, device)
        tflite = [row for row_id, row in rows.items() if row_id.startswith("tflite-")]
        assert len(tflite) == 2
        for row in tflite:
            assert row["status"] == "failed", (device, row)
            assert row["reason"].startswith(f"device {device}: ") and fragment in row["reason"], row["reason"]
            assert "\n" not in row["reason"] and row["metrics"] == {} and row["latency_ms"] is None
    assert "(never accepted blindly)" in b.rows["tflite-fp32@unknownhost"]["reason"]
    assert b.results["targets"]["unreachable"]["error"].startswith("device unreachable")
    # a refused connection is worth another try (profile retries: 2); a refused key or host key is not
    unreachable = b.rows["tflite-fp32@unreachable"]
    assert [r["backoff_s"] for r in unreachable["retries"]] == [0.1, 0.2, 0.0], unreachable["retries"]
    assert all(r["device"] == "unreachable" and "connection refused" in r["error"] for r in unreachable["retries"])
    assert "retries" not in b.rows["tflite-fp32@badkey"] or len(b.rows["tflite-fp32@badkey"]["retries"]) == 1
    assert b.rows["tflite-int8@dev"]["device"] == "dev" and b.rows["tflite-int8@dev"]["timing"]["clocks"]["readings"]
    # the job of both tflite artifacts, timed together, then each alone to find the one that crashed
    assert len(b.killed) == 3


@pytest.mark.device
@pytest.mark.slow
def test_host_keys_are_verified_never_accepted(device_build):
    for path, content in device_build.known_before.items():
        assert path.read_bytes() == content  # nothing was added or replaced


@pytest.mark.device
@pytest.mark.slow
def test_runtime_missing_on_the_device_fails_only_its_rows(device_build):
    rows = _device_rows(device_build, "noonnx")
    assert rows["tflite-int8@noonnx"]["status"] == "ok"
    for precision in ("fp32", "int8"):
        row = rows[f"onnx-{precision}@noonnx"]
        assert row["status"] == "failed"
        assert "runtime missing for onnx: onnxruntime (ModuleNotFoundError: No module named 'onnxruntime')" in row["reason"]
    assert rows["openvino-fp32@noonnx"]["status"] == "skipped"


@pytest.mark.device
@pytest.mark.slow
def test_a_run_past_its_timeout_is_stopped_on_the_device_too(device_build):
    b = device_build
    for row_id in ("tflite-fp32@hung", "tflite-int8@hung"):
        row = b.rows[row_id]
        assert row["status"] == "failed" and "took longer than 4 s and was stopped" in row["reason"], row["reason"]
    # The runner exits when ssh goes away: no worker is left running on the device.
    deadline = time.monotonic() + 15
    while _processes_with(str(b.server.root / "work" / "hung")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(str(b.server.root / "work" / "hung")) == []


@pytest.mark.device
@pytest.mark.slow
def test_temporary_folders_on_the_device_are_removed(device_build):
    work = device_build.server.root / "work"
    for device in ("dev", "noonnx", "killed", "hung"):
        assert (work / device).is_dir()  # made by the first run
        assert list((work / device).iterdir()) == [], device


@pytest.mark.device
def test_devices_check_reports_the_device(ssh_server, tmp_path):
    device_profile(tmp_path, "dev", ssh_server)
    result = CliRunner().invoke(cli, ["devices", "check", "dev", "--devices", str(tmp_path / "devices")])
    assert result.exit_code == 0, result.output
    assert "tflite_runtime  2.14.0" in result.output and "device dev: ready" in result.output
    assert f"python       {'.'.join(map(str, sys.version_info[:2]))}" in result.output or "python       3." in result.output
    assert "isa" in result.output and "connection   ok" in result.output


@pytest.mark.device
@pytest.mark.parametrize("overrides, fragment", [
    ({"runtimes": ["tflite_runtime", "onnxruntime"]}, "runtime onnxruntime is listed in the profile but does not import"),
    ({"port": "free"}, "device unreachable: connection refused"),
    ({"identity_file": "stranger"}, "authentication refused"),
    ({"known_hosts": "wrong"}, "host key mismatch"),
    ({"python": "/nonexistent/python3"}, "'/nonexistent/python3' not found on the device"),
])
def test_devices_check_says_exactly_what_is_missing(ssh_server, tmp_path, overrides, fragment):
    replace = {"free": free_port(), "stranger": ssh_server.stranger_key, "wrong": ssh_server.wrong_known_hosts}
    device_profile(tmp_path, "dev", ssh_server, **{k: replace.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()})
    result = CliRunner().invoke(cli, ["devices", "check", "dev", "--devices", str(tmp_path / "devices")])
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and fragment in error[0], result.output


@pytest.mark.device
def test_bench_on_the_device(ssh_server, artifacts, tmp_path):
    device_profile(tmp_path, "dev", ssh_server)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", str(artifacts["tflite-int8"]), str(artifacts["tflite-fp32"]),
                                      "--target", "cpu", "--target", "dev", "--runs", "10", "--warmup", "2",
                                      "--devices", str(tmp_path / "devices"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    rows = {row["id"]: row for row in results["rows"]}
    assert rows["tflite-int8.tflite@dev"]["runtime"] == "tflite_runtime 2.14.0"
    assert rows["tflite-int8.tflite@dev"]["latency_ms"]["runs"] == 10
    assert rows["tflite-int8.tflite@cpu"]["runtime"].startswith("ai_edge_litert")
    assert results["targets"]["dev"]["runtimes"]["tflite_runtime"]["version"] == "2.14.0"
    assert "dev (tflite_runtime 2.14.0)" in result.output
    # every file probed where it ran: on this machine by edgekit, on the device by its runner
    for row_id in ("tflite-int8.tflite@cpu", "tflite-int8.tflite@dev", "tflite-fp32.tflite@dev"):
        assert rows[row_id]["memory"]["peak_bytes"] > 0 and rows[row_id]["profile"]["ops"] > 0, rows[row_id]
    assert rows["tflite-int8.tflite@dev"]["profile"]["op_counts"] == rows["tflite-int8.tflite@cpu"]["profile"]["op_counts"]


@pytest.mark.device
def test_spaces_and_semicolons_stay_arguments(ssh_server, artifacts, tmp_path):
    """A work dir with a space and a model named like a shell command: nothing else runs."""
    home = Path.home()
    markers = ["PWNED", "PWNED2", "PWNED3"]
    places = [home, Path.cwd(), tmp_path, ssh_server.root, Path("/"), Path("/tmp")]
    for place in places:
        for marker in markers:
            assert not (place / marker).exists(), f"{place / marker} exists before the test"
    work = tmp_path / "dev work;touch PWNED3"
    device_profile(tmp_path, "odd", ssh_server, work_dir=work)
    model = tmp_path / "a b;touch PWNED;$(touch PWNED2).tflite"
    shutil.copy(artifacts["tflite-int8"], model)
    result = CliRunner().invoke(cli, ["bench", str(model), "--target", "odd", "--runs", "3", "--warmup", "1",
                                      "--devices", str(tmp_path / "devices"), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert row["status"] == "ok" and row["runtime"] == "tflite_runtime 2.14.0" and row["latency_ms"]["runs"] == 3
    for place in places:
        for marker in markers:
            assert not (place / marker).exists(), f"{place / marker} was created: a remote shell ran our text"
    leftovers = [p for p in tmp_path.rglob("*") if p.name in markers]
    assert leftovers == []
    assert work.is_dir() and list(work.iterdir()) == []  # made, used, and its run folder removed


# --------------------------------------------------------------------------- probes on the device (memory, per-op profile)


def _recording_python(folder: Path, python: str, fail: bool = False) -> tuple[Path, Path]:
    """A device Python that appends the command line of every probe process it starts to a log
    (and, with ``fail``, makes each probe process die with status 7, as a crashing runtime would)."""
    site, log = folder / "probe-site", folder / "probes.log"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if any(a.endswith('request.json') for a in sys.argv):\n"
        f"    open({str(log)!r}, 'a').write(' '.join(sys.argv) + '\\n')\n"
        + ("    os._exit(7)\n" if fail else ""))
    wrapper = folder / "probe-python"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH='{site}' exec '{python}' \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper, log


def _device_measure(ssh_server, folder: Path, artifacts, names, x, profile=True, **overrides):
    """The device's rows of ``names`` (tflite artifacts), timed and probed over the real sshd."""
    device = ssh.SshTarget(profiles.load_profile(device_profile(folder, "dev", ssh_server, **overrides)))
    variants = [SimpleNamespace(format="tflite", precision=name.split("-")[1], files=[artifacts[name]], settings={})
                for name in names]
    spec = SimpleNamespace(warmup=1, runs=3, min_time_s=0.0, threads=1, rounds=1, profile=profile)
    return device.measure_all(variants, spec, list(x[:16]), None)


def _host_probe(artifact: Path, x, folder: Path) -> dict:
    """What the host's own probe (``python -m edgekit.runtimes.probe``, as edgekit.bench.profiles
    starts it for a cpu row) measures for the same artifact."""
    from edgekit.bench.profiles import RUNS

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "samples.npy", np.asarray(x[:16], dtype=np.float32))
    request = {"format": "tflite", "precision": "fp32", "path": str(artifact), "module": "edgekit.runtimes.litert",
               "options": {}, "threads": 1, "samples": str(folder / "samples.npy"), "runs": RUNS, "profile": True,
               "workdir": str(folder), "runtime_module": None}
    (folder / "request.json").write_text(json.dumps(request))
    subprocess.run([sys.executable, "-m", "edgekit.runtimes.probe", str(folder / "request.json"), str(folder / "result.json")],
                   check=True, timeout=180, capture_output=True)
    return json.loads((folder / "result.json").read_text())


def test_the_probe_travels_only_with_a_job_that_probes_and_is_device_code():
    from tests.targets.test_parity import (
        test_shipped_code_is_python_3_7_and_imports_only_stdlib_numpy_and_its_runtime as check,
    )

    check(jobs.PROBE_FILE)  # Python 3.7, stdlib + numpy + edgekit.runtimes at module level
    entries = [(FORMATS["tflite"], [Path("m.tflite")], ["tflite_runtime"], {})]
    x = np.zeros((2, 8, 8, 1), np.float32)
    probing = jobs.group_job_files(entries, x, warmup=0, runs=1, probe={"timeout_s": 120, "budget_s": 60, "runs": 50},
                                   precisions=["int8"])
    plain = jobs.group_job_files(entries, x, warmup=0, runs=1)
    assert jobs.PROBE_FILE in probing and jobs.PROBE_FILE not in plain
    assert json.loads(probing["job.json"])["probe"]["timeout_s"] == 120 and "probe" not in json.loads(plain["job.json"])
    assert json.loads(probing["job.json"])["rows"][0]["precision"] == "int8"


@pytest.mark.device
def test_device_rows_get_memory_and_a_profile_from_the_same_probe_as_the_host(ssh_server, artifacts, digits, tmp_path):
    """Probed on the device (tflite_runtime 2.14, no ai_edge_litert), after the timed rounds, in
    a fresh process per row: memory measured as on the host, the profile's ops those of the host's
    probe of the same artifact; the prefix timing that needs ai_edge_litert's tools says it could
    not run, and the row stays ok."""
    from edgekit.bench import profiles as bench_profiles

    x, _ = digits
    python, log = _recording_python(tmp_path, ssh_server.python)
    measured = _device_measure(ssh_server, tmp_path, artifacts, ["tflite-fp32", "tflite-int8"], x, python=str(python))
    assert [m.status for m in measured] == ["ok", "ok"], [m.reason for m in measured]
    assert len(log.read_text().splitlines()) == 2  # one fresh probe process per row
    for name, m in zip(["tflite-fp32", "tflite-int8"], measured):
        probe = m.probe
        assert probe["memory"]["peak_bytes"] > 0 and probe["memory"]["load_bytes"] >= 0
        assert probe["memory"]["how"].startswith("resident-memory growth of a fresh process: VmHWM")
        assert probe["profile"]["runtime"] == "tflite_runtime 2.14.0" == m.runtime
        host = _host_probe(artifacts[name], x, tmp_path / f"host-{name}")
        assert host["profile"]["runtime"].startswith("ai_edge_litert")
        device_summary, host_summary = (bench_profiles.summarize(p["profile"], None) for p in (probe, host))
        assert device_summary["op_counts"] == host_summary["op_counts"] and device_summary["ops"] > 0
        assert [op["type"] for op in probe["profile"]["ops"]] == [op["type"] for op in host["profile"]["ops"]]
        if len(probe["profile"]["segments"]) > 1:  # prefix models need ai_edge_litert.tools, which the device lacks
            assert "prefix models could not be timed" in probe["profile"]["shares_unknown"]
        print(f"{name}: device peak {probe['memory']['peak_bytes']} B, host peak {host['memory']['peak_bytes']} B; "
              f"ops {device_summary['op_counts']}")
    # attached to a row as a cpu row's: results fields and profiles/<row id>.json
    fields = bench_profiles.attach("tflite-fp32@dev", measured[0].probe, tmp_path / "run")
    assert fields["memory"]["peak_bytes"] > 0 and fields["profile"]["file"] == "profiles/tflite-fp32@dev.json"
    assert json.loads((tmp_path / "run" / "profiles" / "tflite-fp32@dev.json").read_text())["row"] == "tflite-fp32@dev"


@pytest.mark.device
def test_profile_false_sends_no_probe_to_the_device(ssh_server, artifacts, digits, tmp_path):
    x, _ = digits
    python, log = _recording_python(tmp_path, ssh_server.python)
    measured = _device_measure(ssh_server, tmp_path, artifacts, ["tflite-int8"], x, profile=False, python=str(python))
    assert measured[0].status == "ok" and measured[0].probe is None
    assert not log.exists()  # no probe process ran on the device


@pytest.mark.device
def test_a_probe_that_fails_on_the_device_leaves_the_row_ok_with_a_profile_error(ssh_server, artifacts, digits, tmp_path):
    x, _ = digits
    python, log = _recording_python(tmp_path, ssh_server.python, fail=True)
    measured = _device_measure(ssh_server, tmp_path, artifacts, ["tflite-int8"], x, python=str(python))
    m = measured[0]
    assert m.status == "ok" and m.latencies_ms and len(log.read_text().splitlines()) == 1
    assert m.probe["memory"] is None and m.probe["profile"] is None and m.probe["probe_failed"]
    assert m.probe["profile_error"].startswith("probe exited with 7 on the device") and "\n" not in m.probe["profile_error"]


def test_cached_device_measurements_keep_their_probe(tmp_path):
    from edgekit.bench.stage import _load_measurement, _store_measurement
    from edgekit.targets import Measurement

    probe = {"memory": {"peak_bytes": 123, "load_bytes": 45, "how": "h"}, "profile": {"ops": []}, "profile_error": None}
    _store_measurement(Measurement("ok", latencies_ms=[1.0, 2.0], probe=probe), tmp_path, "row0")
    assert _load_measurement(tmp_path, "row0").probe == probe


@pytest.mark.device
@pytest.mark.slow
def test_device_rows_of_a_build_carry_the_devices_probe(device_build):
    b = device_build
    for precision in ("fp32", "int8"):
        row, host = b.rows[f"tflite-{precision}@dev"], b.rows[f"tflite-{precision}@cpu"]
        assert row["status"] == "ok" and row["memory"]["peak_bytes"] > 0, row.get("profile_error")
        assert row["profile"]["runtime"] == "tflite_runtime 2.14.0" and host["profile"]["runtime"].startswith("ai_edge_litert")
        assert row["profile"]["op_counts"] == host["profile"]["op_counts"]
        assert row["profile"]["file"] == f"profiles/tflite-{precision}@dev.json"
        assert (b.folder / "run" / row["profile"]["file"]).is_file()
    # timed alone after the runner was killed: no probe, said so
    killed = b.rows["tflite-fp32@killed"]
    assert killed["status"] == "failed" and killed["memory"] is None


@pytest.mark.device
@pytest.mark.slow
def test_a_cached_device_row_keeps_the_devices_probe(device_build):
    """The same artifacts on the same device again: the rows come from the bench cache, with the
    memory and profile their probe measured then (nothing runs on the device)."""
    b = device_build
    recipe = b.folder / "again.yaml"  # only what the device runs: a group with a skipped row is never cached
    recipe.write_text(TINY_RECIPE + "targets: [cpu, dev]\nexport: {formats: [tflite]}\n")
    runs = []
    for out in ("first", "again"):
        result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(b.folder / out)])
        assert result.exit_code == 0, result.output
        runs.append({r["id"]: r for r in json.loads((b.folder / out / "results.json").read_text())["rows"]})
    assert "[bench] dev: 2 row(s) (cached)" in result.output, result.output
    for precision in ("fp32", "int8"):
        row, before = runs[1][f"tflite-{precision}@dev"], runs[0][f"tflite-{precision}@dev"]
        assert row["memory"] == before["memory"] and row["memory"]["peak_bytes"] > 0
        assert row["profile"] == before["profile"]
        assert row["profile"]["runtime"] == "tflite_runtime 2.14.0"
        assert (b.folder / "again" / row["profile"]["file"]).is_file()
