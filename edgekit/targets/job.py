"""What a device receives: the runner, the format's runtime session, the job, the artifact, inputs.

The device runs edgekit's own session code, not a copy: the format table's ``runtime``
(``edgekit.runtimes.litert:open_session``) names the module, and that module's file travels
with ``edgekit/runtimes/__init__.py`` (the Session base) as a small package next to
``runner.py``. The rest of edgekit does not travel: ``edgekit/__init__.py`` on the device is a
stub, so a session that imported anything else of edgekit (pydantic, TensorFlow, the format
table) would fail there, and the parity test (tests/targets/test_parity.py) would see it.
A job that probes its rows (``group_job_files(probe=...)``) also carries
``edgekit/runtimes/probe.py``, written to the same rules; every job carries the timing loop,
``edgekit/bench/timing.py``, and ``edgekit/targets/clocks.py`` (the clocks and temperatures read
around the timed rounds), each under a stub ``__init__.py`` of its package (``runner_files``).
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np

from edgekit import runtimes
from edgekit.errors import DeviceError
from edgekit.runtimes import as_samples

RUNNER = Path(__file__).with_name("runner.py")
RUNNER_NAME = RUNNER.name
#: where the probe (memory, per-op profile) goes in a job that carries one
PROBE_FILE = "edgekit/runtimes/probe.py"
#: the device's edgekit/__init__.py (and that of any other package a session lives in)
PACKAGE_STUB = b'"""edgekit\'s runtime sessions only, sent by edgekit.targets.job; not the whole package."""\n'


def runner_files() -> dict[str, Path | bytes]:
    """What every job carries beside the runner: the timing loop (``edgekit.bench.timing``) and
    the clocks module (``runner.clock_recorder``), each under a stub package."""
    from edgekit.bench import timing
    from edgekit.targets import clocks

    return {"edgekit/bench/__init__.py": PACKAGE_STUB, "edgekit/bench/timing.py": Path(timing.__file__),
            "edgekit/targets/__init__.py": PACKAGE_STUB, "edgekit/targets/clocks.py": Path(clocks.__file__)}


def session_files(runtime: str) -> dict[str, Path | bytes]:
    """The files that make ``runtime`` (``module:function``) importable next to the runner.

    Raises:
        DeviceError: the module cannot be found on this machine.
    """
    module = runtime.partition(":")[0]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise DeviceError(f"the runtime session {module} is not a Python file here; it cannot be sent to a device")
    parts = module.split(".")
    files: dict[str, Path | bytes] = {f"{'/'.join(parts[:i])}/__init__.py": PACKAGE_STUB for i in range(1, len(parts))}
    files["edgekit/__init__.py"] = PACKAGE_STUB
    files["edgekit/runtimes/__init__.py"] = Path(runtimes.__file__)
    origin = Path(spec.origin)
    files["/".join(parts) + ("/__init__.py" if origin.name == "__init__.py" else ".py")] = origin
    return files


def job_files(fmt, files: list[Path], modules: list[str], bench_inputs, eval_inputs=None, *, warmup: int, runs: int,
              min_time_s: float = 0.0, threads: int = 1, rounds: int = 1,
              options: dict | None = None, clocks: dict | None = None) -> dict[str, Path | bytes]:
    """Everything one run needs, by relative path: unpack it in one folder and run
    ``python runner.py job.json`` there.

    Args:
        fmt: the format-table row (``edgekit.formats.Format``) of the artifact.
        files: the artifact's files; the first is the one the runtime opens.
        modules: runtime modules to try on the device, in order (of ``fmt.runtime_packages``).
        bench_inputs: float32 samples cycled through by the timing loop.
        eval_inputs: float32 samples whose outputs come back (for metrics), or None.
        warmup, runs, min_time_s, threads, rounds: the timing loop's settings, as for local runs.
        options: runtime options (e.g. ONNX graph_optimization_level).
        clocks: ``{"sysfs_root", "wait_below_c", "wait_timeout_s"}`` for the clocks read around
            the rounds (``edgekit.targets.clocks``); None: /sys, no waiting.
    """
    inputs = io.BytesIO()
    arrays = {"bench": as_samples(bench_inputs)}
    if eval_inputs is not None:
        arrays["eval"] = as_samples(eval_inputs)
    np.savez_compressed(inputs, **arrays)
    job = {"format": fmt.name, "runtime": fmt.runtime, "modules": list(modules), "model": f"model/{files[0].name}",
           "inputs": "inputs.npz", "threads": threads, "warmup": warmup, "runs": runs, "min_time_s": min_time_s,
           "rounds": rounds, "options": options or {}, "clocks": clocks or {}}
    return {RUNNER_NAME: RUNNER, **session_files(fmt.runtime), **runner_files(), "job.json": json.dumps(job).encode(),
            "inputs.npz": inputs.getvalue(), **{f"model/{f.name}": f for f in files}}


def group_job_files(entries: list[tuple], bench_inputs, eval_inputs=None, *, warmup: int, runs: int,
                    min_time_s: float = 0.0, threads: int = 1, rounds: int = 1, seed: int = 0,
                    bench_sets: list | None = None, probe: dict | None = None,
                    precisions: list | None = None, clocks: dict | None = None) -> dict[str, Path | bytes]:
    """Everything one run of several artifacts needs, timed together in interleaved rounds
    (``runner.run_group``): ``entries`` holds ``(fmt, files, modules, options)`` per artifact,
    as ``job_files`` takes them one at a time; artifact ``i`` goes to ``model/i/``.
    ``bench_sets`` (one sample list per artifact) replaces ``bench_inputs`` for models whose
    inputs differ (``edgekit bench`` on files). ``probe`` (``{"timeout_s", "budget_s", "runs",
    "samples"}``): after the timed rounds, probe each row's memory and per-op profile on the
    device (``edgekit/runtimes/probe.py`` goes along); None: no probe, and no probe code sent.
    ``precisions``: each artifact's precision (what the probe's profile calls intended).
    ``clocks``: as for ``job_files``."""
    inputs = io.BytesIO()
    arrays = {"bench": as_samples(bench_inputs if bench_sets is None else bench_sets[0])}
    for i, own in enumerate(bench_sets or ()):
        arrays[f"bench{i}"] = as_samples(own)
    if eval_inputs is not None:
        arrays["eval"] = as_samples(eval_inputs)
    np.savez_compressed(inputs, **arrays)
    payload: dict[str, Path | bytes] = {RUNNER_NAME: RUNNER, **runner_files()}
    rows = []
    for i, (fmt, files, modules, options) in enumerate(entries):
        payload.update(session_files(fmt.runtime))
        payload.update({f"model/{i}/{f.name}": f for f in files})
        rows.append({"format": fmt.name, "runtime": fmt.runtime, "modules": list(modules),
                     "model": f"model/{i}/{files[0].name}", "options": options or {},
                     "bench": f"bench{i}" if bench_sets is not None else "bench",
                     "precision": precisions[i] if precisions else None})
    job = {"rows": rows, "inputs": "inputs.npz", "threads": threads, "warmup": warmup, "runs": runs,
           "min_time_s": min_time_s, "rounds": rounds, "seed": seed, "clocks": clocks or {}}
    if probe:
        from edgekit.runtimes import probe as probe_module

        payload[PROBE_FILE] = Path(probe_module.__file__)
        job["probe"] = dict(probe)
    return {**payload, "job.json": json.dumps(job).encode(), "inputs.npz": inputs.getvalue()}


def result_payload(stdout: bytes) -> dict | None:
    """The runner's last ``EDGEKIT-RESULT`` payload in ``stdout``, or None when it printed none."""
    from edgekit.targets.runner import RESULT_MARKER

    lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.startswith(RESULT_MARKER)]
    return json.loads(lines[-1][len(RESULT_MARKER):]) if lines else None
