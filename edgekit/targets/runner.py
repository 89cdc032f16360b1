#!/usr/bin/env python3
"""edgekit's device runner: time (and run for metrics) one artifact where edgekit is not installed.

This file is copied to a device together with the job, the artifact, its inputs and the
format's runtime session from ``edgekit/runtimes/`` (laid out as a small ``edgekit.runtimes``
package next to this file, see edgekit.targets.job), and run there with the device's own
Python. It needs the standard library and numpy only; the runtime itself is imported by the
session the job names (the format table's ``Format.runtime``), trying the job's ``modules``
(the format table's ``runtime_packages`` the device profile lists) in order. It runs on
Python 3.7+ and numpy 1.x or 2.x.

The timing loop is ``edgekit/bench/timing.py``, shipped beside this file (see
edgekit.targets.job) and imported by edgekit itself (``edgekit.bench.stats`` re-exports it), so
local and remote runs are timed by the very same loop, and the device opens the artifact with
the very same session code as the host.

Usage on the device::

    python3 runner.py JOB.json [--exit-on-stdin-eof]
    python3 - --probe [--work-dir DIR] [--modules m1,m2]   (this file on stdin)

It prints one line ``EDGEKIT-RESULT {json}`` on stdout: the outputs (base64 .npy), the
latencies in ms, the runtime, its settings and the device's environment (and, for a group job
with ``probe`` settings, each row's memory and per-op profile from ``edgekit.runtimes.probe``,
run after the timed rounds in a fresh process per row); or ``{"error": ...}`` and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import io
import json
import os
import platform
import sys
import threading
import time

import numpy as np

RESULT_MARKER = "EDGEKIT-RESULT "

#: ISA extensions that decide how fast int8 and fp32 kernels can be (x86 and Arm names).
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2",
)


# --------------------------------------------------------------------------- environment


def distribution_version(module):
    """Version of the distribution that provides ``module`` (tflite_runtime -> tflite-runtime
    2.14.0), else the module's ``__version__`` (onnxruntime-gpu provides onnxruntime)."""
    try:
        from importlib import metadata  # novm: Python 3.8+, guarded
    except ImportError:  # Python 3.7
        metadata = None
    if metadata is not None:
        try:
            return metadata.version(module.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    mod = sys.modules.get(module)
    return getattr(mod, "__version__", None) if mod is not None else None


def cpu_info():
    """CPU model name and the ISA flags of ISA_FLAGS it has (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            text = handle.read()
    except OSError:
        return model, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return model, [f for f in ISA_FLAGS if f in flags]


def probe(modules=None, work_dir=None):
    """The device's environment: Python, CPU, ISA flags, numpy and which runtimes import."""
    cpu, isa = cpu_info()
    runtimes = {}
    for module in modules or ():
        try:
            __import__(module)
            runtimes[module] = {"ok": True, "version": distribution_version(module)}
        except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
            runtimes[module] = {"ok": False, "error": _one_line(exc)}
    info = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "runtimes": runtimes,
    }
    if work_dir is not None:
        path = os.path.expanduser(work_dir)
        info["work_dir"] = {"path": path, "exists": os.path.isdir(path), "writable": os.access(path, os.W_OK | os.X_OK),
                            "free_bytes": free_bytes(path)}
    return info


def free_bytes(path):
    """Free bytes for an unprivileged user on the file system of ``path`` (or of its nearest
    existing parent: the work dir is made on the first run), or None."""
    import shutil

    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    try:
        return shutil.disk_usage(path or "/").free
    except OSError:
        return None


def clock_recorder(job):
    """The job's clocks recorder (``edgekit.targets.clocks``, shipped with the job), from its
    ``clocks`` settings (``sysfs_root``, ``wait_below_c``, ``wait_timeout_s``), or None for a job
    that carries no clocks code (an older host)."""
    try:
        from edgekit.targets import clocks
    except ImportError:
        return None
    settings = job.get("clocks") or {}
    return clocks.Recorder(settings.get("sysfs_root"), settings.get("wait_below_c"),
                           float(settings.get("wait_timeout_s") or 300.0))


# --------------------------------------------------------------------------- jobs


class RuntimeMissing(Exception):
    """None of the runtime modules for a format can be imported."""


def open_session(job, path):
    """Open ``path`` with the job's session (``"runtime": "edgekit.runtimes.litert:open_session"``)
    in the first importable module of the job's ``modules``.

    Raises:
        RuntimeMissing: none of the modules can be imported here.
    """
    name, _, function = job["runtime"].partition(":")
    module = runtime_module(job)
    opener = getattr(importlib.import_module(name), function or "open_session")
    return opener(path, int(job.get("threads", 1)), dict(job.get("options") or {}), module=module)


def runtime_module(job):
    """The first importable module of the job's ``modules``: the one its session runs on.

    Raises:
        RuntimeMissing: none of the modules can be imported here.
    """
    problems = []
    for module in list(job.get("modules") or []):
        try:
            __import__(module)
        except ImportError as exc:
            problems.append(f"{module} ({_one_line(exc)})")
            continue
        return module
    raise RuntimeMissing("runtime missing for {}: {} (with {})".format(
        job.get("format"), "; ".join(problems) or "the job names no runtime module", sys.executable))


def encode_array(array):
    """An array as JSON-safe base64 .npy bytes (exact, no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return {"npy_base64": base64.b64encode(buffer.getvalue()).decode("ascii")}


def decode_array(payload):
    """The inverse of encode_array."""
    return np.load(io.BytesIO(base64.b64decode(payload["npy_base64"])), allow_pickle=False)


def run_job(job, base_dir="."):
    """Open the job's artifact, predict the evaluation inputs, time the benchmark inputs.

    Args:
        job: ``{"format", "runtime", "modules", "model", "inputs", "threads", "warmup", "runs",
            "min_time_s", "rounds", "options"}`` (see edgekit.targets.job.job_files); ``model`` and
            ``inputs`` (an .npz with ``bench`` and, optionally, ``eval`` float32 arrays) are
            relative to ``base_dir``. Without ``inputs``: ``samples`` (16) uniform [0, 1) samples
            of the session's input shape are timed, and nothing is evaluated.
        base_dir: the folder of the job file.

    Returns:
        ``{"runtime", "settings", "input_shape", "latencies_ms", "rounds_ms", "outputs",
        "environment", "session_file"}``.
    """
    from edgekit.bench.timing import time_rounds  # shipped beside this file (not on the --probe path)
    from edgekit.runtimes import as_samples

    path = os.path.join(base_dir, job["model"])
    session = open_session(job, path)
    if job.get("inputs"):
        with np.load(os.path.join(base_dir, job["inputs"]), allow_pickle=False) as arrays:
            bench_inputs = as_samples(arrays["bench"])  # a field per input for several, each its own dtype
            eval_inputs = as_samples(arrays["eval"]) if "eval" in arrays.files else None
    else:  # no inputs given (edgekit verify): uniform [0, 1) samples of the model's own input shape, seed 0
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in list(session.input_shape)[1:]]
        bench_inputs = np.random.default_rng(0).random((int(job.get("samples", 16)), *shape), dtype=np.float32)
        eval_inputs = None
    outputs = session.predict(eval_inputs) if eval_inputs is not None and len(eval_inputs) else None
    recorder = clock_recorder(job)
    rounds = time_rounds([session], list(bench_inputs), int(job.get("warmup", 10)), int(job.get("runs", 100)),
                         float(job.get("min_time_s", 0.0)), rounds=int(job.get("rounds", 1)), on_round=recorder)[0]
    return dict(_session_result(session, outputs), latencies_ms=[t for r in rounds for t in r], rounds_ms=rounds,
                environment=probe(job.get("modules")), clocks=recorder.summary() if recorder else None)


def _session_result(session, outputs):
    """What a job's result says of one opened session: its runtime, settings, input shape, the
    evaluation outputs, and which file the session came from (the shipped copy, never something
    installed on the device)."""
    io = session.io() if getattr(session, "inputs", None) else None  # every input and output as it ran
    return {"runtime": session.runtime, "settings": session.settings, "input_shape": list(session.input_shape), "io": io,
            "outputs": encode_array(outputs) if outputs is not None else None,
            "session_file": os.path.abspath(sys.modules[type(session).__module__].__file__)}


def run_group(job, base_dir="."):
    """Several artifacts in one job, timed together in interleaved rounds (``time_rounds``), as
    the host's CPU times its rows: ``job["rows"]`` lists ``{"format", "runtime", "modules",
    "model", "options"}`` per artifact; the timing settings and inputs are shared. A row whose
    session does not open or run gets ``{"error", "kind"}`` and the others go on.

    With ``job["probe"]`` (``{"timeout_s", "budget_s", "runs", "samples"}``; absent under
    ``benchmark.profile: false``), once every row is timed, each ok row is probed for its peak
    memory and per-op profile in a fresh process (``probe_row``): its result is the row's ``probe``.

    Returns:
        ``{"rows": [per row: the fields of ``run_job`` without the environment (plus ``probe``),
        or an error], "environment", "clocks"}``: ``clocks`` is what ``edgekit.targets.clocks``
        read around the rounds (every row of the job was timed in the same rounds).
    """
    from edgekit.bench.timing import time_rounds  # shipped beside this file
    from edgekit.runtimes import as_samples, one_sample_batch

    with np.load(os.path.join(base_dir, job["inputs"]), allow_pickle=False) as arrays:
        # each row's own samples ("bench0", ...) where the models take different inputs
        bench_sets = [list(as_samples(arrays[row.get("bench", "bench")])) for row in job["rows"]]
        eval_inputs = as_samples(arrays["eval"]) if "eval" in arrays.files else None
    results, sessions, sets, opened = [], [], [], []
    for i, (row, bench_inputs) in enumerate(zip(job["rows"], bench_sets)):
        try:
            session = open_session(dict(job, **row), os.path.join(base_dir, row["model"]))
            outputs = session.predict(eval_inputs) if eval_inputs is not None and len(eval_inputs) else None
            session.run(session.prepare(one_sample_batch(bench_inputs[0])))
        except RuntimeMissing as exc:
            results.append({"error": str(exc), "kind": "runtime_missing"})
            continue
        except Exception as exc:  # noqa: BLE001 - one broken artifact fails its own row
            results.append({"error": _one_line(exc), "kind": "error"})
            continue
        sessions.append(session)
        sets.append(bench_inputs)
        opened.append((i, runtime_module(dict(job, **row))))
        results.append(_session_result(session, outputs))
    recorder = clock_recorder(job) if sessions else None
    timed = time_rounds(sessions, sets, int(job.get("warmup", 10)), int(job.get("runs", 100)),
                        float(job.get("min_time_s", 0.0)), rounds=int(job.get("rounds", 1)), seed=int(job.get("seed", 0)),
                        per_session=True, on_round=recorder)
    ok = [r for r in results if "error" not in r]
    for result, rounds in zip(ok, timed):
        result.update(latencies_ms=[t for r in rounds for t in r], rounds_ms=rounds, interleaved=len(ok) > 1)
    if job.get("probe"):  # after the timed rounds, never beside them: each row in a fresh process
        del sessions[:]  # the timed sessions' memory goes before the probes start
        session = None
        started = time.monotonic()
        for (i, module), result in zip(opened, ok):
            budget = float(job["probe"].get("budget_s", 600.0)) - (time.monotonic() - started)
            result["probe"] = probe_row(job, job["rows"][i], i, module, bench_sets[i], base_dir, budget)
    modules = sorted({m for row in job["rows"] for m in row.get("modules") or ()})
    return {"rows": results, "environment": probe(modules), "clocks": recorder.summary() if recorder else None}


# --------------------------------------------------------------------------- probes (memory, per-op profile)

#: the probe's process: dies with this one (its stdin is our pipe), imports the shipped package
#: from the job's folder (argv[1]) and runs edgekit.runtimes.probe on REQUEST.json RESULT.json
PROBE_BOOT = (
    "import os, sys, threading\n"
    "def _watch():\n"
    "    try:\n"
    "        sys.stdin.buffer.read()\n"
    "    except (OSError, ValueError):\n"
    "        pass\n"
    "    os._exit(3)\n"
    "threading.Thread(target=_watch, daemon=True).start()\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "from edgekit.runtimes import probe\n"
    "code = probe.main(sys.argv[2:])\n"
    "sys.stdout.flush()\n"
    "sys.stderr.flush()\n"
    "os._exit(code)\n"  # not sys.exit: the watcher still reads stdin, which shutdown would wait for
)


def probe_row(job, row, index, module, samples, base_dir, budget_s):
    """Row ``index``'s memory and per-op profile, from ``edgekit.runtimes.probe`` (shipped with the
    job) in a fresh process of this Python, as the host probes its own rows: the row's artifact,
    options and threads, its session's ``module``, its first 16 samples. Never raises: a probe
    that fails, or runs past ``job["probe"]["timeout_s"]`` (or the ``budget_s`` left), gives
    ``{"memory": None, "profile": None, "profile_error": one line, "probe_failed": True}``."""
    import subprocess

    from edgekit.runtimes import as_samples

    settings = job["probe"]
    timeout = min(float(settings.get("timeout_s", 120.0)), budget_s)
    if timeout < 1.0:
        return probe_failed("not probed: the device's probes ran past their budget of {:.0f} s".format(
            float(settings.get("budget_s", 0.0))))
    err = None
    try:
        folder = os.path.join(base_dir, "probe", str(index))
        os.makedirs(folder)
        np.save(os.path.join(folder, "samples.npy"),
                as_samples(samples[: max(1, min(len(samples), int(settings.get("samples", 16))))]))
        request = {"format": row.get("format"), "precision": row.get("precision"),
                   "path": os.path.abspath(os.path.join(base_dir, row["model"])),
                   "module": row["runtime"].partition(":")[0], "options": row.get("options") or {},
                   "threads": int(job.get("threads", 1)), "samples": os.path.join(folder, "samples.npy"),
                   "runs": int(settings.get("runs", 50)), "profile": True, "workdir": folder, "runtime_module": module}
        with open(os.path.join(folder, "request.json"), "w") as handle:
            json.dump(request, handle)
        out = os.path.join(folder, "result.json")
        err = open(os.path.join(folder, "stderr"), "wb")  # noqa: SIM115 - open while the probe runs
        proc = subprocess.Popen([sys.executable, "-c", PROBE_BOOT, os.path.abspath(base_dir),
                                 os.path.join(folder, "request.json"), out],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, cwd=folder)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return probe_failed(f"probe timed out after {timeout:.0f} s on the device")
        finally:
            proc.stdin.close()
    except Exception as exc:  # noqa: BLE001 - a probe never fails its row
        return probe_failed("probe not started on the device: " + _one_line(exc))
    finally:
        if err is not None:
            err.close()
    if code == 0 and os.path.exists(out):
        try:
            with open(out) as handle:
                value = json.load(handle)
            if isinstance(value, dict) and "memory" in value:
                return value
        except ValueError:
            pass
    try:
        with open(os.path.join(folder, "stderr"), errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except OSError:
        lines = []
    return probe_failed("probe exited with {} on the device{}".format(code, ": " + _shorten(lines[-1], 200) if lines else ""))


def probe_failed(reason):
    """A probe result without figures: why there are none (the host's probes give the same)."""
    return {"memory": None, "profile": None, "profile_error": reason, "probe_failed": True}


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return "{}: {}".format(type(exc).__name__, _shorten(text[0], 300) if text else "").rstrip(": ")


def _shorten(text, limit):
    """``text`` in at most ``limit`` characters, cut between words (edgekit.errors.shorten's
    plain form: this file runs where edgekit is not installed)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 3)
    return (text[:cut].rstrip(" ,:;-") if cut > 0 else text[:limit - 4]) + " ..."


def _exit_when_stdin_closes(child):
    """Die with the connection: ssh closes our stdin when the host side goes away (timeout,
    Ctrl-C), and a benchmark must not keep a device busy for nobody."""
    def watch():
        try:
            while sys.stdin.buffer.read(65536):
                pass
        except (OSError, ValueError):
            pass
        child.kill()
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def _emit(payload):
    sys.stdout.write(RESULT_MARKER + json.dumps(payload) + "\n")
    sys.stdout.flush()


def _die_with_parent():
    """When the process that started this one says so ($EDGEKIT_PARENT_PID: a local GPU run),
    ask Linux for SIGKILL when it dies, as edgekit.lifeline does (this file runs without
    edgekit); exit at once when it is gone already."""
    text = os.environ.pop("EDGEKIT_PARENT_PID", "")
    if not text.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        return
    if os.getppid() != int(text):
        os._exit(1)


def _supervise(job_path, watch_stdin):
    """Run the job in a child process and report how it ended.

    A runtime that crashes (SIGSEGV in a kernel, the out-of-memory killer, someone's kill -9)
    takes its process with it; this small parent survives to say so in one line.
    """
    import signal
    import subprocess

    started = time.monotonic()
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--in-process", job_path],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             env={**os.environ, "EDGEKIT_PARENT_PID": str(os.getpid())})  # dies with this one
    if watch_stdin:
        _exit_when_stdin_closes(child)
    out, _ = child.communicate()
    lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.startswith(RESULT_MARKER)]
    if lines:
        sys.stdout.write(lines[-1] + "\n")
        return child.returncode
    if child.returncode < 0:
        try:
            name = signal.Signals(-child.returncode).name
        except ValueError:
            name = f"signal {-child.returncode}"
        reason = f"the runner process was killed by {name} after {time.monotonic() - started:.1f} s"
    else:
        reason = f"the runner process exited with status {child.returncode} without a result"
    _emit({"error": reason, "kind": "killed"})
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(description="edgekit standalone runner")
    parser.add_argument("job", nargs="?", help="job file (JSON)")
    parser.add_argument("--probe", action="store_true", help="print the environment and exit")
    parser.add_argument("--work-dir", default=None, help="with --probe: check this folder exists and is writable")
    parser.add_argument("--modules", default=None, help="with --probe: comma-separated runtime modules to try")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when stdin is closed (ssh gone)")
    parser.add_argument("--in-process", action="store_true", help="run the job in this process (no supervisor)")
    args = parser.parse_args(argv)
    _die_with_parent()
    try:
        if args.probe:
            _emit(probe(args.modules.split(",") if args.modules else None, args.work_dir))
            return 0
        if not args.job:
            parser.error("give a job file or --probe")
        if not args.in_process:
            return _supervise(args.job, args.exit_on_stdin_eof)
        with open(args.job) as handle:
            job = json.load(handle)
        run = run_group if "rows" in job else run_job
        _emit(run(job, os.path.dirname(os.path.abspath(args.job))))
        return 0
    except RuntimeMissing as exc:
        _emit({"error": str(exc), "kind": "runtime_missing"})
    except Exception as exc:  # noqa: BLE001 - the host gets one line, not a traceback
        _emit({"error": _one_line(exc), "kind": "error"})
    return 1


if __name__ == "__main__":
    # The job's session is the edgekit/runtimes package shipped next to this file: it must win
    # over anything installed on the device, also under python -I or PYTHONSAFEPATH, which
    # leave this folder off sys.path.
    script = globals().get("__file__") or ""  # the probe comes on stdin: no folder of its own
    if os.path.isfile(script) and os.path.dirname(os.path.abspath(script)) not in sys.path[:1]:
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    sys.exit(main())
