"""The ``gpu`` target: the fp32 baseline on a GPU, the reference users compare edge numbers
against. Its rows carry their own outputs, so their metrics are the GPU's.

- The Keras fp32 model, on the first of these that runs it on a GPU:
  1. TensorFlow, when TensorFlow sees a GPU: the tf_keras model itself, as on the CPU row;
  2. Keras 3 on JAX, 3. Keras 3 on PyTorch: the model exported once as a Keras 3 ``.keras``
     file (``edgekit.convert.keras3``, cached like a conversion) and run by
     ``edgekit.runtimes.keras3`` in the device runner (targets/runner.py), in a local process of
     its own with ``KERAS_BACKEND`` set (this process imported Keras with TensorFlow already).
  Latency is batch 1 with the device synchronised in every timed call; a batch-N throughput
  figure (samples/s, ``settings.throughput``; never used for speedups) comes with it.
  Without any of them the row is skipped, the reason naming what was tried.
- The base model's ONNX fp32 artifact on onnxruntime's CUDAExecutionProvider, when installed.

Environment variables (``EDGEKIT_GPU_BACKEND`` and ``EDGEKIT_GPU_ALLOW_CPU`` are for tests):
    EDGEKIT_GPU_BACKEND: tensorflow, jax or torch: try only that one.
    EDGEKIT_GPU_ALLOW_CPU=1: the JAX / PyTorch path runs on the CPU when it sees no GPU, so CI
        covers it; such a row says ``device: "cpu (test mode)"``, ``test_mode: true`` and
        "CPU test mode" in its runtime, and is never a GPU number.
    EDGEKIT_GPU_PYTHON: the Python that runs the Keras 3 path (default: this one), e.g. a
        virtual environment with jax[cuda] beside edgekit's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgekit import lifeline
from edgekit.bench import stats
from edgekit.formats import FORMATS, GPU_SESSION, Format
from edgekit.targets.base import Measurement, Target

BACKEND_ENV, ALLOW_CPU_ENV, PYTHON_ENV = "EDGEKIT_GPU_BACKEND", "EDGEKIT_GPU_ALLOW_CPU", "EDGEKIT_GPU_PYTHON"
#: the Keras row's backends in order of preference
BACKENDS = ("tensorflow", "jax", "torch")
#: batch size of the throughput figure, and how long it is timed at least
THROUGHPUT_BATCH, THROUGHPUT_MIN_TIME_S = 64, 0.5
#: longest one Keras 3 run (model load, compile, outputs, timing) may take
RUN_TIMEOUT_S = 900.0

#: the Keras 3 file as the device runner sees it: not a row of the format table (the cpu and
#: device targets have the Keras model's own row); only this target sends it to the runner
KERAS3 = Format(
    name="keras3", suffix=".keras", precisions=("fp32",), converter="edgekit.convert.keras3:export",
    runtime="edgekit.runtimes.keras3:open_session", runtime_packages=("jax", "torch"),
    description="the Keras fp32 model as a Keras 3 file, on Keras 3's JAX or PyTorch backend", label="Keras 3",
    runs_with=(GPU_SESSION,), packages=("keras", "tf-keras"),
)


class GpuTarget(Target):
    kind = "gpu"
    evaluates = True
    is_reference = True
    order = 1
    offers = frozenset({GPU_SESSION})

    def __init__(self, name: str = "gpu"):
        self.name = name
        self._keras3: dict[str, Any] | None = None  # what the last Keras 3 run reported
        self._tried: list[str] = []

    # ------------------------------------------------------------------ the Target interface

    def supports(self, variant) -> bool:
        """The fp32 baseline: the Keras model, and the base model's fp32 artifact of every format
        whose row says it runs on a GPU (``Format.runs_with`` has GPU_SESSION: ONNX)."""
        fmt = FORMATS.get(variant.format)
        if fmt is None:  # the Keras model itself
            return True
        return self.runs_format(fmt) and variant.precision == "fp32" and variant.model == "base"

    def unsupported_reason(self, variant) -> str:
        return f"target {self.name} times the recipe's fp32 baseline only; use cpu or a device"

    def cache_identity(self) -> dict:
        """Which backends may run, on which GPUs, from which Python, whether the CPU test mode
        is on: a measurement never comes back from the cache for another choice."""
        from edgekit.cache import source_hash

        # The Keras 3 session and export are not the Keras row's session module, which is all the
        # bench key's code hash names: their source goes in here.
        return {"kind": self.kind, "backends": os.environ.get(BACKEND_ENV, ""), "allow_cpu": _allow_cpu(),
                "python": _python(), "gpus": _nvidia_smi(), "cpu": _cpu(),
                "code": source_hash("edgekit.runtimes.keras3", "edgekit.convert.keras3")}

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        if variant.format in FORMATS:  # onnxruntime's CUDA provider
            return _onnx_on_gpu(variant, spec, samples, eval_inputs)
        try:
            backends = _backends()
        except ValueError as exc:
            return Measurement("failed", str(exc))
        self._tried = []
        for backend in backends:
            if backend == "tensorflow":
                measured = self._tensorflow(variant, spec, samples, eval_inputs)
            else:
                measured = self._keras3_run(backend, variant, spec, samples, eval_inputs)
            if isinstance(measured, Measurement):
                return measured
            self._tried.append(measured)  # why this backend could not run it on a GPU
        hint = "" if _allow_cpu() else "; install jax[cuda12] or a CUDA build of torch (with keras 3) for a GPU row"
        return Measurement("skipped", f"no GPU runtime for the Keras model: {'; '.join(self._tried)}{hint}; "
                           "the speedup column is relative to the CPU baseline")

    def environment(self) -> dict:
        info: dict[str, Any] = {"nvidia_smi": _nvidia_smi() or "not found"}
        if "tensorflow" in sys.modules:  # never imported for this block alone: a cached rebuild stays TF-free
            try:
                import tensorflow as tf

                info["tensorflow_gpus"] = [
                    {"name": d.name, **{k: str(v) for k, v in tf.config.experimental.get_device_details(d).items()}}
                    for d in tf.config.list_physical_devices("GPU")
                ]
            except Exception as exc:  # noqa: BLE001 - an environment block must never fail a build
                info["tensorflow_gpus"] = f"unknown: {type(exc).__name__}: {exc}"
        elif importlib.util.find_spec("tensorflow") is None:
            info["tensorflow_gpus"] = "tensorflow not installed"
        else:
            info["tensorflow_gpus"] = "not asked: tensorflow was not imported by this build"
        try:
            import onnxruntime as ort

            info["onnxruntime_providers"] = ort.get_available_providers()
        except ImportError:
            info["onnxruntime_providers"] = []
        if self._keras3 is not None:
            info["keras3"] = self._keras3
        if self._tried:
            info["keras_backends_tried"] = list(self._tried)
        return info

    # ------------------------------------------------------------------ the Keras row

    def _tensorflow(self, variant, spec, samples, eval_inputs) -> Measurement | str:
        if "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow") is None:
            return "tensorflow not installed"
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            return f"tensorflow {tf.__version__} sees no GPU"
        from edgekit.runtimes.keras import open_session

        with tf.device(gpus[0].name):
            session = open_session(_keras_model(variant), spec.threads)
            outputs = session.predict(eval_inputs) if eval_inputs is not None else None
            rounds = _time(session, spec, samples)
        return Measurement("ok", latencies_ms=[t for r in rounds for t in r], rounds_ms=rounds, outputs=outputs,
                           settings={"device": gpus[0].name, "backend": "tensorflow"})

    def _keras3_run(self, backend, variant, spec, samples, eval_inputs) -> Measurement | str:
        """The Keras 3 file on ``backend`` in the device runner, in a process of its own."""
        python = _python()
        if python == sys.executable:  # cheap checks first, where they can be made here
            for module in ("keras", backend):
                if importlib.util.find_spec(module) is None:
                    return f"{module} not installed"
        from edgekit.errors import ExportError

        try:
            data, export = _exported(variant, samples if eval_inputs is None else eval_inputs)
        except ExportError as exc:
            # The model is the problem, not the machine: no other Keras 3 backend would do better.
            return Measurement("skipped", f"the Keras model does not translate to Keras 3: {exc}")
        from edgekit.targets import job as jobs
        from edgekit.targets.runner import decode_array

        options = {"allow_cpu": _allow_cpu(), "throughput_batch": THROUGHPUT_BATCH,
                   "throughput_min_time_s": THROUGHPUT_MIN_TIME_S}
        with tempfile.TemporaryDirectory(prefix="edgekit-gpu-") as tmp:
            model_file = Path(tmp) / "keras3-fp32.keras"
            model_file.write_bytes(data)
            # The inputs of the throughput figure are the evaluation inputs: with none, the
            # timing samples stand in (their outputs are not returned).
            payload = jobs.job_files(KERAS3, [model_file], [backend], samples,
                                     eval_inputs if eval_inputs is not None else samples, warmup=spec.warmup,
                                     runs=spec.runs, min_time_s=spec.min_time_s, threads=spec.threads,
                                     rounds=getattr(spec, "rounds", 1), options=options)
            result = _run_runner(python, payload, Path(tmp) / "job", backend)
        if "error" in result:
            error = result["error"]
            from edgekit.runtimes.keras3 import NO_GPU

            if NO_GPU in error:
                return error[error.index(NO_GPU):]  # "no GPU visible to jax 0.10.2 (devices: cpu)"
            if result.get("kind") == "runtime_missing" or "No module named" in error:
                return f"{backend}: {error}"
            return Measurement("failed", f"Keras 3 on {backend}: {error}")
        settings = dict(result["settings"])
        env = settings.pop("environment", {})
        self._keras3 = {**env, "device": settings.get("device"), "python": result["environment"].get("python"),
                        "python_executable": result["environment"].get("python_executable"),
                        "export": {k: v for k, v in export.items() if k != "samples"}}
        runtime = result["runtime"] + (", CPU test mode" if settings.get("test_mode") else "")
        outputs = decode_array(result["outputs"]) if result.get("outputs") and eval_inputs is not None else None
        settings["export_max_abs_diff"] = export.get("max_abs_diff")
        return Measurement("ok", latencies_ms=result["latencies_ms"], rounds_ms=result.get("rounds_ms"), outputs=outputs,
                           runtime=runtime, settings=settings, environment=self._keras3)


# --------------------------------------------------------------------------- helpers


def _backends() -> tuple[str, ...]:
    forced = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not forced:
        return BACKENDS
    if forced not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}: expected {', '.join(BACKENDS)} or nothing, received {forced!r}")
    return (forced,)


def _allow_cpu() -> bool:
    return os.environ.get(ALLOW_CPU_ENV, "").strip().lower() in ("1", "true", "yes")


def _python() -> str:
    return os.environ.get(PYTHON_ENV) or sys.executable


def _cpu():
    from edgekit.environment import cpu_info

    return cpu_info()


_SMI: dict[str, Any] = {}


def _nvidia_smi() -> list[dict] | None:
    """Name, driver and memory of every GPU nvidia-smi lists (None without nvidia-smi); read once."""
    if "gpus" in _SMI:
        return _SMI["gpus"]
    gpus = None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=15, check=False)
            rows = [[part.strip() for part in line.split(",")] for line in done.stdout.splitlines() if line.strip()]
            gpus = [{"name": r[0], "driver": r[1], "memory": r[2]} for r in rows if len(r) >= 3] or None
        except (OSError, subprocess.SubprocessError):
            gpus = None
    _SMI["gpus"] = gpus
    return gpus


def _keras_model(variant):
    """The variant's Keras model: its open session's, else loaded from its file."""
    variant.ensure_session()
    model = getattr(variant.session, "model", None)
    if model is not None:
        return model
    if variant.path is None:
        raise ValueError("the Keras baseline has neither a session nor a model file")
    from edgekit.models import register_custom_layers
    from edgekit.train.stage import load_stage_model

    register_custom_layers()
    return load_stage_model(variant.path)


def _exported(variant, samples) -> tuple[bytes, dict]:
    """The Keras 3 file of the variant's model (bytes) and what its export found; from the stage
    cache (``convert``) when the model has a key, the file does not depend on anything else."""

    from edgekit.convert import keras3
    from edgekit.runtimes import as_samples

    check = as_samples(samples[:32])

    def compute() -> tuple[bytes, dict]:
        with tempfile.TemporaryDirectory(prefix="edgekit-keras3-") as tmp:
            path = Path(tmp) / "keras3-fp32.keras"
            info = keras3.export(_keras_model(variant), path, check)
            return path.read_bytes(), info

    if variant.key is None:
        return compute()
    from edgekit.cache import Cache, make_key, source_hash
    from edgekit.runtimes import package_version

    key = make_key("convert", subject=variant.key, format=KERAS3.name, precision="fp32",
                   code=source_hash("edgekit.convert.keras3", "edgekit.runtimes.keras3"),
                   packages={name: package_version(name) for name in KERAS3.packages})

    def store(value, folder: Path) -> None:
        (folder / "keras3-fp32.keras").write_bytes(value[0])
        (folder / "export.json").write_text(json.dumps(value[1]))

    def load(folder: Path) -> tuple[bytes, dict]:
        return (folder / "keras3-fp32.keras").read_bytes(), json.loads((folder / "export.json").read_text())

    value, _ = Cache().fetch("convert", key, "keras3-fp32", load=load, compute=compute, store=store)
    return value


def _run_runner(python: str, payload: dict, folder: Path, backend: str) -> dict:
    """Unpack the runner's files in ``folder``, run ``python runner.py job.json`` there with
    ``KERAS_BACKEND=backend``; the runner's result payload, or ``{"error": ...}``."""
    from edgekit.errors import one_line, shorten
    from edgekit.targets import job as jobs

    for name, content in payload.items():
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            dest.write_bytes(content)
        else:
            shutil.copyfile(content, dest)
    # The backend is read once, when keras is first imported: the reason for this process.
    # JAX would take 75% of the GPU's memory up front; TensorFlow or onnxruntime of this
    # process may hold some of it already.
    env = lifeline.child_env({**os.environ, "KERAS_BACKEND": backend, "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                              "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")})
    try:
        done = subprocess.run([python, str(folder / jobs.RUNNER_NAME), str(folder / "job.json")], cwd=folder, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"the Keras 3 run took longer than {RUN_TIMEOUT_S:.0f} s", "kind": "timeout"}
    except OSError as exc:
        return {"error": f"{python}: {one_line(exc)}", "kind": "runtime_missing"}
    result = jobs.result_payload(done.stdout)
    if result is None:
        lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
        return {"error": f"the runner exited with status {done.returncode} without a result: "
                         f"{shorten(lines[-1], 300) if lines else 'no output'}", "kind": "error"}
    return result


def _onnx_on_gpu(variant, spec, samples, eval_inputs=None) -> Measurement:
    import onnxruntime as ort

    from edgekit.runtimes.onnxruntime import open_session

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return Measurement("skipped", f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: "
                           f"{', '.join(available)}); install onnxruntime-gpu to time ONNX on the GPU")
    level = variant.settings.get("graph_optimization_level")
    session = open_session(variant.path, spec.threads, {"graph_optimization_level": level} if level else None,
                           providers=["CUDAExecutionProvider"])
    if session.session.get_providers()[0] != "CUDAExecutionProvider":
        # onnxruntime falls back to the CPU quietly; CPU numbers must never pass for GPU ones.
        return Measurement("skipped", "onnxruntime's CUDAExecutionProvider is installed but did not start "
                           f"(session providers: {', '.join(session.session.get_providers())}): no usable GPU")
    outputs = session.predict(eval_inputs) if eval_inputs is not None else None
    rounds = _time(session, spec, samples)
    return Measurement("ok", latencies_ms=[t for r in rounds for t in r], rounds_ms=rounds, outputs=outputs,
                       runtime=session.runtime, settings={**session.settings, "device": "CUDAExecutionProvider"})


def _time(session, spec, samples) -> list[list[float]]:
    """THE timing loop (``time_rounds``) for one session, in the recipe's rounds: per round, the
    latencies in ms. One row at a time: a GPU row has no other row to interleave with."""
    return stats.time_rounds([session], samples, spec.warmup, spec.runs, spec.min_time_s,
                             rounds=getattr(spec, "rounds", 1))[0]
