"""One row's peak memory and per-op profile, measured in a fresh process of its own.

    python -m edgekit.runtimes.probe REQUEST.json RESULT.json

The bench stage (``edgekit.bench.profiles``) starts one such process per row of this machine's
CPU, before the timed rounds, so neither measurement touches the reported latency: the timed
sessions are never profiled, and no probe runs beside a timed round. (The Keras row's probe
starts earlier, while the variants convert: it times nothing, and memory does not mind the CPU.)

Memory is measured the same way for every runtime: the resident set after the runtime is
imported, the peak reset (``/proc/self/clear_refs`` = 5 resets VmHWM to the current RSS), the
session opened with the format's own ``open_session`` (the timed rows' code and settings) and
run on the sample inputs, then VmHWM read back: ``peak_bytes`` = VmHWM - RSS before opening,
``load_bytes`` = RSS after opening - RSS before. Where /proc lacks these (not Linux), the
process's ``ru_maxrss`` stands in, and ``how`` says so. The per-op profile comes next, from a
separate session: the runtime module's ``profile_ops`` (see each runtime); a Keras row has none.

Shipped to ssh devices too (``edgekit.targets.job.group_job_files`` sends it with the sessions
when the job carries ``probe`` settings): after the device runner has timed its rows
(``runner.run_group``), it starts this module in a fresh process per row, with the device's
Python, so a device row's memory and profile are measured by this very code. It therefore
keeps the sessions' rules: Python 3.7, the standard library and numpy at module level, and of
edgekit only the shipped ``edgekit.runtimes`` package (the Keras row's imports, TensorFlow and
edgekit.evaluate, are lazy and host only: no Keras row runs on a device). ``runtime_module``
names the module the timed session used (``tflite_runtime`` on a device that has only it);
None takes the session's default.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import numpy as np

#: what a Keras row's profile says instead
KERAS_NO_PROFILE = ("no per-op profile for Keras rows: the baseline is measured whole; per-op profiles "
                    "are of the deployed formats' runtimes")


def _status_kb(field: str):
    """A ``/proc/self/status`` field in bytes (``VmRSS``, ``VmHWM``), or None where there is none."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _maxrss() -> int:
    import resource

    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(value) if sys.platform == "darwin" else int(value) * 1024  # macOS: bytes; Linux: KiB


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _import_runtime(module_name: str, request: dict):
    """Import the row's runtime itself (not only edgekit's module for it), so that what the import
    costs is not counted as the model's memory; returns edgekit's runtime module (None: Keras)."""
    if request.get("format") == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(request.get("threads") or 1))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
        keras = (request.get("keras") or {}).get("keras") or "tf_keras"
        importlib.import_module("keras" if keras == "keras3" else "tf_keras")
        from edgekit.runtimes import keras as keras_runtime

        return keras_runtime
    module = importlib.import_module(module_name)
    if module_name.endswith(".litert"):
        module.interpreter_class(request.get("runtime_module"))
    elif module_name.endswith(".onnxruntime"):
        import onnxruntime  # noqa: F401
    elif module_name.endswith(".openvino"):
        module.disable_telemetry()
        import openvino  # noqa: F401
    return module


def _open(module, request: dict):
    """The row's session, opened as the timed rows open it."""
    if request.get("format") == "keras":
        from pathlib import Path

        from edgekit.models.files import load_build_model

        spec = request.get("keras") or {}
        model = load_build_model(Path(request["path"]), spec.get("keras") or "tf_keras", False,
                            tuple(spec.get("import_dirs") or ()), tuple(tuple(c) for c in spec.get("custom_layers") or ()))
        return module.open_session(model, int(request.get("threads") or 1))
    if request.get("runtime_module"):  # the timed session's module (a device's runner names it)
        return module.open_session(request["path"], int(request.get("threads") or 1), request.get("options") or None,
                                   module=request["runtime_module"])
    return module.open_session(request["path"], int(request.get("threads") or 1), request.get("options") or None)


def memory(module, request: dict, samples) -> tuple:
    """(memory block, the median ms of one inference in this session). See the module docstring."""
    rss_before = _status_kb("VmRSS")
    proc = rss_before is not None and _reset_peak() and _status_kb("VmHWM") is not None
    max_before = _maxrss()
    session = _open(module, request)
    rss_open = _status_kb("VmRSS")
    runs = max(1, int(request.get("memory_runs") or 20))
    from edgekit.runtimes import one_sample_batch

    feeds = [session.prepare(one_sample_batch(x)) for x in samples]
    times = []
    for i in range(runs):
        start = time.perf_counter()
        session.decode(session.run(feeds[i % len(feeds)]))
        times.append(time.perf_counter() - start)
    if proc:
        peak = _status_kb("VmHWM") - rss_before
        block = {"peak_bytes": max(0, int(peak)), "load_bytes": max(0, int(rss_open - rss_before)),
                 "how": ("resident-memory growth of a fresh process: VmHWM (reset after importing the runtime) "
                         f"minus the RSS before opening the session, over opening it and {runs} inferences; "
                         "load_bytes: RSS after opening minus before; both include what the runtime sets up "
                         "for its first session in a process")}
    else:
        block = {"peak_bytes": max(0, _maxrss() - max_before), "load_bytes": None if rss_open is None or rss_before is None
                 else max(0, int(rss_open - rss_before)),
                 "how": ("no resettable peak here (/proc/self/clear_refs or VmHWM missing): growth of the process's "
                         f"ru_maxrss over opening the session and {runs} inferences, a lower bound when the runtime's "
                         "import peaked higher")}
    return block, float(np.median(times)) * 1e3


def probe(request: dict) -> dict:
    """Memory, then the per-op profile, of the row ``request`` describes; errors of the profile
    leave the memory standing (``profile_error``)."""
    samples = np.load(request["samples"]) if request.get("samples") else None
    if samples is None or not len(samples):
        raise ValueError("the probe needs at least one sample input")
    module = _import_runtime(request.get("module") or "", request)
    out = {"memory": None, "profile": None, "profile_error": None}
    out["memory"], plain_ms = memory(module, request, samples)
    if not request.get("profile", True):
        return out
    if request.get("format") == "keras":
        out["profile_error"] = KERAS_NO_PROFILE
        return out
    profile_ops = getattr(module, "profile_ops", None)
    if profile_ops is None:
        out["profile_error"] = "the runtime module {} has no profile_ops".format(request.get("module"))
        return out
    try:
        profile = profile_ops(request["path"], int(request.get("threads") or 1), request.get("options") or None,
                              samples=samples, runs=int(request.get("runs") or 50),
                              module=request.get("runtime_module"), workdir=request.get("workdir"),
                              precision=request.get("precision"))
    except Exception as exc:  # noqa: BLE001 - the memory figure stands without the profile
        from edgekit.runtimes import first_line

        out["profile_error"] = f"profile failed: {first_line(exc, 300)}"
        return out
    profile["unprofiled_ms"] = round(plain_ms, 6)
    out["profile"] = profile
    return out


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        sys.stderr.write("usage: python -m edgekit.runtimes.probe REQUEST.json RESULT.json\n")
        return 2
    with open(args[0]) as handle:
        request = json.load(handle)
    result = probe(request)
    tmp = args[1] + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle, default=str)
    os.replace(tmp, args[1])
    return 0


if __name__ == "__main__":
    from edgekit import lifeline

    lifeline.hold()  # started by a build (bench/profiles.py): never outlive it
    sys.exit(main())
