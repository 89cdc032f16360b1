#!/usr/bin/env python3
"""edgekit's standalone runner: time (and run for metrics) one artifact where edgekit is not installed.

This one file is copied to a device next to an artifact and its inputs and run there with the
device's own Python. At import it needs the standard library and numpy only; the runtime is
imported by format when a job asks for it: ai_edge_litert or tflite_runtime (.tflite),
onnxruntime (.onnx), openvino (.xml + .bin). It runs on Python 3.7+ and numpy 1.x or 2.x.

edgekit itself imports ``time_session`` from here (``edgekit.bench.stats`` re-exports it), so local
and remote runs are timed by the very same loop. The sessions below mirror
``edgekit/runtimes/*`` (the same timed call, the same int8 input quantization and output
dequantization); tests/test_devices.py checks that they give the same outputs.

Usage on the device::

    python3 runner.py JOB.json [--exit-on-stdin-eof]
    python3 runner.py --probe [--work-dir DIR] [--modules m1,m2]

It prints one line ``EDGEKIT-RESULT {json}`` on stdout: the outputs (base64 .npy), the
latencies in ms, the runtime, its settings and the device's environment; or ``{"error": ...}``
and exit status 1.
"""

from __future__ import annotations

import argparse
import base64
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

#: Importable runtime modules and the distributions whose versions are reported for them.
RUNTIME_DISTRIBUTIONS = {
    "ai_edge_litert": ("ai-edge-litert",),
    "tflite_runtime": ("tflite-runtime",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "openvino": ("openvino",),
}


# --------------------------------------------------------------------------- the timing loop


def time_session(session, samples, warmup, runs, min_time_s=0.0):
    """Time ``session.run`` at batch 1: THE timing loop of edgekit, local and remote.

    Inputs are prepared (quantized, converted to the runtime's type) before the clock starts;
    then ``warmup`` untimed runs, then timed runs until both ``runs`` and ``min_time_s`` are
    reached, cycling through the same fixed samples.

    Args:
        session: an object with ``prepare(x)`` and ``run(feed)`` (an edgekit runtime session).
        samples: float32 samples, each of the model's input shape without the batch axis.
        warmup: untimed runs first.
        runs: minimum number of timed runs.
        min_time_s: keep timing until this much wall time has been spent in timed runs.

    Returns:
        Per-run latencies in milliseconds.
    """
    feeds = [session.prepare(np.asarray(x, dtype=np.float32)[None]) for x in samples]
    for i in range(warmup):
        session.run(feeds[i % len(feeds)])
    latencies_ns = []
    spent_ns = 0
    min_time_ns = int(min_time_s * 1e9)
    i = 0
    while len(latencies_ns) < runs or spent_ns < min_time_ns:
        feed = feeds[i % len(feeds)]
        start = time.perf_counter_ns()
        session.run(feed)
        elapsed = time.perf_counter_ns() - start
        latencies_ns.append(elapsed)
        spent_ns += elapsed
        i += 1
    return [ns / 1e6 for ns in latencies_ns]


# --------------------------------------------------------------------------- sessions


class Session:
    """prepare (before the clock) / run (timed) / decode, as in edgekit.runtimes.Session."""

    runtime = ""
    settings = {}
    #: the model's input shape with batch 1
    input_shape = ()

    def prepare(self, x):
        return x

    def run(self, feed):
        raise NotImplementedError

    def decode(self, raw):
        return np.asarray(raw, dtype=np.float32)

    def predict(self, x):
        """Float outputs for many samples, one batch-1 inference each."""
        return np.concatenate([self.decode(self.run(self.prepare(x[i:i + 1]))) for i in range(len(x))])


STATEFUL_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
                          "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF"})


class LiteRTSession(Session):
    """LiteRT / tflite_runtime: set_tensor + invoke + get_tensor."""

    def __init__(self, path, threads, module, options):
        if module == "ai_edge_litert":
            from ai_edge_litert.interpreter import Interpreter
        else:
            from tflite_runtime.interpreter import Interpreter
        self.runtime = "{} {}".format(module, distribution_version(module))
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        self.settings = {"threads": threads, "delegate": "default (XNNPACK for float ops)"}
        # Fused TFLite sequence ops carry their state from one invoke to the next; a Keras RNN
        # starts every call from zero: reset before each inference (as edgekit.runtimes.litert).
        try:
            ops = self.interpreter._get_ops_details()
            self.stateful = any(op["op_name"] in STATEFUL_OPS for op in ops)
        except AttributeError:
            self.stateful = True
        if self.stateful:
            self.settings["reset_state_per_inference"] = True

    def prepare(self, x):
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):
            # Quantize with the input tensor's own (scale, zero_point), or accuracy is garbage.
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
        return np.ascontiguousarray(x.reshape(self.input["shape"]), dtype=dtype)

    def run(self, feed):
        if self.stateful:
            self.interpreter.reset_all_variables()
        self.interpreter.set_tensor(self.input["index"], feed)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def decode(self, raw):
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = self.output["quantization"]
            return ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return raw.astype(np.float32)


class OnnxRuntimeSession(Session):
    """onnxruntime: run_with_iobinding (input bound in prepare) + copy_outputs_to_cpu."""

    DTYPES = {
        "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
        "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    }

    def __init__(self, path, threads, module, options):
        import onnxruntime as ort

        level = options.get("graph_optimization_level") or "ORT_ENABLE_ALL"
        providers = options.get("providers") or ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        self.session = ort.InferenceSession(str(path), so, providers=list(providers))
        self.input = self.session.get_inputs()[0]
        self.output_name = self.session.get_outputs()[0].name
        self.dtype = self.DTYPES.get(self.input.type, np.float32)
        # Dynamic dims (strings or None) become 1: every run here is batch 1.
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in self.input.shape)
        self.runtime = "onnxruntime {}".format(distribution_version("onnxruntime") or ort.__version__)
        self.settings = {
            "threads": threads, "inter_op_threads": 1, "execution_mode": "sequential",
            "graph_optimization_level": level, "providers": self.session.get_providers(),
        }

    def prepare(self, x):
        array = np.ascontiguousarray(x.reshape(self.input_shape), dtype=self.dtype)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input.name, array)
        binding.bind_output(self.output_name, "cpu")
        return binding, array  # the array rides along: the binding points into its memory

    def run(self, feed):
        self.session.run_with_iobinding(feed[0])
        return feed[0].copy_outputs_to_cpu()[0]


class OpenVINOSession(Session):
    """OpenVINO CPU plugin: set_input_tensor + infer(share_outputs=True) + get_output_tensor(0).data."""

    def __init__(self, path, threads, module, options):
        _decline_openvino_telemetry()
        import openvino as ov

        self._ov = ov
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads), "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_shape = tuple(int(d) for d in self.compiled.input(0).get_shape())
        self.runtime = "openvino {}".format(distribution_version("openvino"))
        self.settings = {
            "device": "CPU", "performance_hint": "LATENCY",
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "num_streams": int(self.compiled.get_property("NUM_STREAMS")),
            "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        }

    def prepare(self, x):
        array = np.ascontiguousarray(x.reshape(self.input_shape), dtype=np.float32)
        return self._ov.Tensor(array, shared_memory=True)

    def run(self, feed):
        self.request.set_input_tensor(feed)
        self.request.infer(share_outputs=True)
        return self.request.get_output_tensor(0).data

    def decode(self, raw):
        # The output is a view of the request's buffer, which the next run overwrites.
        return np.array(raw, dtype=np.float32)


def _decline_openvino_telemetry():
    """openvino_telemetry assumes consent unless opted out; a device run must send nothing."""
    try:
        from openvino_telemetry.utils.opt_in_checker import (
            ConsentCheckResult,
            OptInChecker,
        )
    except ImportError:
        return
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED


#: format name -> (session class, runtime modules that can run it, in order of preference)
SESSIONS = {
    "tflite": (LiteRTSession, ("ai_edge_litert", "tflite_runtime")),
    "onnx": (OnnxRuntimeSession, ("onnxruntime",)),
    "openvino": (OpenVINOSession, ("openvino",)),
}


def open_session(fmt, path, threads=1, modules=None, options=None):
    """Open ``path`` in the first importable runtime module of ``modules`` that can run ``fmt``.

    Raises:
        RuntimeMissing: none of the modules can be imported here.
    """
    cls, candidates = SESSIONS[fmt]
    wanted = [m for m in (modules or candidates) if m in candidates]
    problems = []
    for module in wanted:
        try:
            __import__(module)
        except ImportError as exc:
            problems.append("{} ({})".format(module, _one_line(exc)))
            continue
        return cls(path, int(threads), module, dict(options or {}))
    raise RuntimeMissing("runtime missing for {}: {} (with {})".format(
        fmt, "; ".join(problems) or "none of {} was asked for".format(", ".join(candidates)), sys.executable))


class RuntimeMissing(Exception):
    """None of the runtime modules for a format can be imported."""


# --------------------------------------------------------------------------- environment


def distribution_version(module):
    """Version of the distribution that provides ``module`` (e.g. tflite_runtime -> 2.14.0)."""
    names = RUNTIME_DISTRIBUTIONS.get(module, (module,))
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        metadata = None
    if metadata is not None:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
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
    for module in modules or RUNTIME_DISTRIBUTIONS:
        try:
            __import__(module)
            runtimes[module] = {"ok": True, "version": distribution_version(module)}
        except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
            runtimes[module] = {"ok": False, "error": _one_line(exc)}
    info = {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "machine": platform.machine(),
        "os": "{} {}".format(platform.system(), platform.release()),
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "runtimes": runtimes,
    }
    if work_dir is not None:
        path = os.path.expanduser(work_dir)
        info["work_dir"] = {"path": path, "exists": os.path.isdir(path), "writable": os.access(path, os.W_OK | os.X_OK)}
    return info


# --------------------------------------------------------------------------- jobs


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
        job: ``{"format", "model", "inputs", "threads", "warmup", "runs", "min_time_s",
            "modules", "options"}``; ``model`` and ``inputs`` (an .npz with ``bench`` and,
            optionally, ``eval`` float32 arrays) are relative to ``base_dir``.
        base_dir: the folder of the job file.

    Returns:
        ``{"runtime", "settings", "input_shape", "latencies_ms", "outputs", "environment"}``.
    """
    path = os.path.join(base_dir, job["model"])
    threads = int(job.get("threads", 1))
    session = open_session(job["format"], path, threads, job.get("modules"), job.get("options"))
    with np.load(os.path.join(base_dir, job["inputs"]), allow_pickle=False) as arrays:
        bench_inputs = np.asarray(arrays["bench"], dtype=np.float32)
        eval_inputs = np.asarray(arrays["eval"], dtype=np.float32) if "eval" in arrays.files else None
    outputs = session.predict(eval_inputs) if eval_inputs is not None and len(eval_inputs) else None
    latencies = time_session(session, list(bench_inputs), int(job.get("warmup", 10)), int(job.get("runs", 100)),
                             float(job.get("min_time_s", 0.0)))
    return {
        "runtime": session.runtime,
        "settings": session.settings,
        "input_shape": list(session.input_shape),
        "latencies_ms": latencies,
        "outputs": encode_array(outputs) if outputs is not None else None,
        "environment": probe(job.get("modules")),
    }


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return "{}: {}".format(type(exc).__name__, text[0][:300] if text else "").rstrip(": ")


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


def _supervise(job_path, watch_stdin):
    """Run the job in a child process and report how it ended.

    A runtime that crashes (SIGSEGV in a kernel, the out-of-memory killer, someone's kill -9)
    takes its process with it; this small parent survives to say so in one line.
    """
    import signal
    import subprocess

    started = time.monotonic()
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--in-process", job_path],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
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
            name = "signal {}".format(-child.returncode)
        reason = "the runner process was killed by {} after {:.1f} s".format(name, time.monotonic() - started)
    else:
        reason = "the runner process exited with status {} without a result".format(child.returncode)
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
        _emit(run_job(job, os.path.dirname(os.path.abspath(args.job))))
        return 0
    except RuntimeMissing as exc:
        _emit({"error": str(exc), "kind": "runtime_missing"})
    except Exception as exc:  # noqa: BLE001 - the host gets one line, not a traceback
        _emit({"error": _one_line(exc), "kind": "error"})
    return 1


if __name__ == "__main__":
    sys.exit(main())
