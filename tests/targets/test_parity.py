"""One session code: every format through the local session and through the device runner.

The device side is the real thing minus ssh: the tar of runner.py + the shipped
``edgekit/runtimes`` package + job + artifact + inputs, unpacked by the same upload script in
a fresh ``edgekit-*`` folder, run by this machine's Python as ``python runner.py job.json``
(supervised, in a child process), cleaned up after (``LocalConnection``). The same again over
the real sshd where the ssh tools are installed. Outputs must be equal to the bit and the
recorded runtime and settings identical: both sides run the very same session code.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.formats import FORMATS
from edgekit.targets import job as jobs
from edgekit.targets import ssh
from edgekit.targets.ssh_transport import LocalConnection
from tests.conftest import FORMAT_CASES
from tests.targets.sshd import device_profile

#: every runtime this machine's Python has, under its profile name
HOST_RUNTIMES = ["litert", "onnxruntime", "openvino"]


def _local_profile(tmp_path: Path) -> ssh.SshProfile:
    profile = ssh.SshProfile(host="localhost", python=sys.executable, work_dir=str(tmp_path / "work"),
                             runtimes=HOST_RUNTIMES, timeout_s=120)
    profile._name = "local"
    return profile


def _compare(fmt, path, profile, connection, x_eval, x_bench):
    local = fmt.load_runtime()(path, 1, {})
    expected = local.predict(x_eval)
    run = ssh.run_artifact(profile, fmt, fmt.files(path), profile.modules_for(fmt.runtime_packages), x_bench, x_eval,
                           warmup=2, runs=5, threads=1, connection=connection)
    assert run.outputs.dtype == np.float32 and run.outputs.shape == expected.shape
    np.testing.assert_array_equal(run.outputs, expected)  # the same code on the same machine: bit for bit
    assert run.runtime == local.runtime
    assert run.settings == json.loads(json.dumps(local.settings))  # through JSON, as the runner sends them
    assert run.input_shape == list(local.input_shape)
    assert len(run.latencies_ms) == 5 and min(run.latencies_ms) > 0
    return float(np.max(np.abs(run.outputs - expected)))


@pytest.mark.parametrize("fmt_name, precision", FORMAT_CASES)
def test_device_runner_gives_the_local_sessions_outputs_and_settings(tiny_artifacts, digits, tmp_path, fmt_name, precision):
    x, _ = digits
    fmt, path = FORMATS[fmt_name], tiny_artifacts[fmt_name, precision]
    profile = _local_profile(tmp_path)
    diff = _compare(fmt, path, profile, LocalConnection(profile), x[1400:1600], x[:4])
    print(f"{fmt_name}-{precision}: max abs diff {diff}")
    assert list((tmp_path / "work").iterdir()) == []  # the run folder was removed


@pytest.mark.device
@pytest.mark.parametrize("fmt_name, precision", FORMAT_CASES)
def test_parity_over_real_ssh(ssh_server, tiny_artifacts, digits, tmp_path, fmt_name, precision):
    """The same through sshd, the device being this machine's Python with all three runtimes."""
    from edgekit.targets.profiles import load_profile

    x, _ = digits
    profile = load_profile(device_profile(tmp_path, "self", ssh_server, python=sys.executable, runtimes=HOST_RUNTIMES))
    fmt = FORMATS[fmt_name]
    _compare(fmt, tiny_artifacts[fmt_name, precision], profile, None, x[1400:1500], x[:4])


@pytest.mark.parametrize("flags", [[], ["-I"]])
def test_the_runner_uses_the_shipped_sessions_even_in_isolated_mode(tiny_artifacts, digits, tmp_path, flags):
    """Unpacked as on a device and run from elsewhere (``-I`` drops the script's folder from
    sys.path): the session still comes from the shipped package, not from the installed edgekit."""
    import subprocess

    x, _ = digits
    fmt, path = FORMATS["onnx"], tiny_artifacts["onnx", "int8"]
    for name, content in jobs.job_files(fmt, fmt.files(path), ["onnxruntime"], x[:2], x[:3], warmup=0, runs=2).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content.read_bytes() if isinstance(content, Path) else content)
    done = subprocess.run([sys.executable, *flags, str(tmp_path / "runner.py"), str(tmp_path / "job.json")],
                          cwd="/", capture_output=True, timeout=120, check=False)
    payload = jobs.result_payload(done.stdout)
    assert payload and "error" not in payload, done.stderr
    assert payload["session_file"] == str(tmp_path / "edgekit" / "runtimes" / "onnxruntime.py")


def test_the_payload_ships_the_sessions_and_nothing_host_only(tiny_artifacts):
    for fmt in FORMATS.values():
        files = jobs.job_files(fmt, [Path("m")], list(fmt.runtime_packages), np.zeros((1, 2), np.float32), warmup=0, runs=1)
        runtime_file = fmt.runtime_module.replace(".", "/") + ".py"
        clocks = ("edgekit/targets/__init__.py", "edgekit/targets/clocks.py",  # the /sys readings around the rounds
                  "edgekit/bench/__init__.py", "edgekit/bench/timing.py")  # the timing loop
        assert {"runner.py", "edgekit/__init__.py", "edgekit/runtimes/__init__.py", runtime_file, "job.json", *clocks} <= set(files)
        assert not any(name.startswith("edgekit/") and name not in ("edgekit/__init__.py", "edgekit/runtimes/__init__.py",
                                                                      runtime_file, *clocks) for name in files), sorted(files)
        assert files["edgekit/__init__.py"] == jobs.PACKAGE_STUB  # not the host's edgekit
        assert files["edgekit/targets/__init__.py"] == jobs.PACKAGE_STUB
        job = json.loads(files["job.json"])
        # The module list and the session come from the format table, not from a list of the runner's.
        assert job["runtime"] == fmt.runtime and job["modules"] == list(fmt.runtime_packages)


SHIPPED = ["edgekit/runtimes/__init__.py", "edgekit/runtimes/litert.py", "edgekit/runtimes/onnxruntime.py",
           "edgekit/runtimes/openvino.py", "edgekit/targets/runner.py", "edgekit/targets/clocks.py",
           "edgekit/bench/timing.py"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_code_is_python_3_7_and_imports_only_stdlib_numpy_and_its_runtime(name):
    """What runs on a device parses as Python 3.7 (no walrus, match, ...) and imports, at module
    level, the standard library, numpy and edgekit.runtimes only; runtimes are imported lazily."""
    source = (ROOT / name).read_text()
    tree = ast.parse(source, feature_version=(3, 7))
    allowed = set(sys.stdlib_module_names) | {"numpy", "edgekit"}
    for node in tree.body:  # module level only: a session imports its runtime inside __init__
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]} if node.level == 0 else set()
            if node.module and node.module.startswith("edgekit"):
                assert node.module == "edgekit.runtimes", f"{name} imports {node.module}: it is not shipped"
        else:
            continue
        assert roots <= allowed, f"{name} imports {roots - allowed} at module level"
    # No X | Y evaluated at run time (3.10): annotations are strings under the __future__ import.
    assert "from __future__ import annotations" in source


def test_the_shipped_sessions_do_not_import_pydantic_or_the_format_table(tmp_path):
    """Import every shipped session under the device's stub package, with pydantic blocked."""
    import subprocess

    files = {}
    for fmt in FORMATS.values():
        files.update(jobs.session_files(fmt.runtime))
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content.read_bytes() if isinstance(content, Path) else content)
    modules = [fmt.runtime_module for fmt in FORMATS.values()]
    code = ("import sys\nsys.modules['pydantic'] = None\nsys.modules['tensorflow'] = None\n"
            f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
            "import edgekit\nprint(edgekit.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "edgekit" / "__init__.py")
