"""Targets: where a variant is timed. One entry per kind of target.

A target says which variants it can run, times them with the one loop in bench.py, and
describes its environment for results.json:

- ``cpu``: this machine, every variant, in the session the variant was evaluated with.
- ``gpu``: the fp32 baseline on a GPU, the reference users compare edge numbers against: the
  Keras model on TensorFlow's first GPU, and the base model's ONNX fp32 artifact on
  onnxruntime's CUDAExecutionProvider when that is installed. Skipped, with the reason, when
  there is no GPU. Its rows carry their own outputs, so their metrics are the GPU's.
- a device name: a profile in devices/NAME.yaml (see edgekit.devices). The standalone runner
  runs every artifact the device has a runtime for over ssh; the outputs for the metrics and
  the latencies both come from the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit.bench import stats as bench
from edgekit.formats import FORMATS


@dataclass
class Measurement:
    """What a target measured for one variant.

    ``outputs`` (the variant's outputs on the test split, produced on the target) are set by
    targets that run elsewhere than the variant's evaluation session; the row's metrics and
    parity are then computed from them. ``runtime`` overrides the variant's runtime name.
    """

    status: str  # ok | failed | skipped
    reason: str | None = None
    latencies_ms: list[float] | None = None
    settings: dict | None = None
    outputs: Any = None
    environment: dict | None = None
    runtime: str | None = None


def _time_on_cpu(variant, spec, samples, eval_inputs=None) -> Measurement:
    latencies = bench.time_session(variant.session, samples, spec.warmup, spec.runs, spec.min_time_s)
    return Measurement("ok", latencies_ms=latencies)


def _gpu_supports(variant) -> bool:
    """The fp32 baseline: the Keras model, and the base model's ONNX fp32 artifact."""
    return variant.format == "keras" or (variant.format == "onnx" and variant.precision == "fp32" and variant.model == "base")


def _time_on_gpu(variant, spec, samples, eval_inputs=None) -> Measurement:
    if variant.format == "onnx":
        return _onnx_on_gpu(variant, spec, samples, eval_inputs)
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return Measurement("skipped", "no GPU visible to TensorFlow; the speedup column is relative to the CPU baseline")
    from edgekit.runtimes.keras import open_session

    with tf.device(gpus[0].name):
        session = open_session(variant.session.model, spec.threads)
        outputs = session.predict(eval_inputs) if eval_inputs is not None else None
        latencies = bench.time_session(session, samples, spec.warmup, spec.runs, spec.min_time_s)
    return Measurement("ok", latencies_ms=latencies, outputs=outputs, settings={"device": gpus[0].name})


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
    latencies = bench.time_session(session, samples, spec.warmup, spec.runs, spec.min_time_s)
    return Measurement("ok", latencies_ms=latencies, outputs=outputs, runtime=session.runtime,
                       settings={**session.settings, "device": "CUDAExecutionProvider"})


def _cpu_environment() -> dict:
    from edgekit import environment

    return environment.collect()


def _gpu_environment() -> dict:
    info: dict[str, Any] = {}
    try:
        import tensorflow as tf

        info["tensorflow_gpus"] = [
            {"name": d.name, **{k: str(v) for k, v in tf.config.experimental.get_device_details(d).items()}}
            for d in tf.config.list_physical_devices("GPU")
        ]
    except Exception as exc:  # noqa: BLE001 - an environment block must never fail a build
        info["tensorflow_gpus"] = f"unknown: {type(exc).__name__}: {exc}"
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime_providers"] = []
    return info


@dataclass(frozen=True)
class Target:
    name: str
    supports: Callable[[object], bool]
    measure: Callable[..., Measurement]
    environment: Callable[[], dict] = field(default=_cpu_environment)
    #: True when the row's metrics come from this target's own outputs (Measurement.outputs)
    #: rather than from the variant's evaluation on this machine.
    evaluates: bool = False


TARGETS: dict[str, Target] = {
    "cpu": Target("cpu", supports=lambda variant: True, measure=_time_on_cpu),
    "gpu": Target("gpu", supports=_gpu_supports, measure=_time_on_gpu, environment=_gpu_environment, evaluates=True),
}


class DeviceTarget:
    """An ssh device from devices/NAME.yaml; every artifact format it has a runtime for."""

    evaluates = True

    def __init__(self, profile, log: Callable[[str], None] | None = None):
        self.profile, self.name, self.log = profile, profile.name, log
        self._environment: dict[str, Any] | None = None
        self._unreachable: str | None = None  # set once ssh itself failed: later rows fail at once

    def supports(self, variant) -> bool:
        return variant.format in FORMATS  # the Keras model needs TensorFlow: never on a device

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        from edgekit.targets import devices

        fmt, p = FORMATS[variant.format], self.profile
        modules = p.modules_for(fmt.runtime_packages)
        if not modules:
            wanted = " or ".join(name for name, module in devices.RUNTIME_MODULES.items() if module in fmt.runtime_packages)
            return Measurement("skipped", f"device {self.name} has no runtime for {fmt.name}: its profile lists "
                               f"{', '.join(p.runtimes)}; install {wanted} there and add it to runtimes in {Path(p.path).name}")
        if self._unreachable:
            return Measurement("failed", self._unreachable)
        options = {k: v for k, v in variant.settings.items() if isinstance(v, (str, int, float, bool))}
        try:
            run = devices.run_artifact(p, fmt.name, variant.files, modules, samples, eval_inputs, warmup=spec.warmup,
                                       runs=spec.runs, min_time_s=spec.min_time_s, threads=spec.threads,
                                       options=options, log=self.log)
        except devices.DeviceError as exc:
            reason = f"device {self.name}: {exc}"
            if exc.connection:
                self._unreachable = reason
            return Measurement("failed", reason)
        self._environment = {"device": self.name, "host": p.describe(), "profile": str(p.path), **run.environment}
        return Measurement("ok", latencies_ms=run.latencies_ms, outputs=run.outputs, runtime=run.runtime,
                           environment=self._environment, settings={**run.settings, "device": self.name})

    def environment(self) -> dict:
        if self._environment is not None:
            return self._environment
        base = {"device": self.name, "host": self.profile.describe(), "profile": str(self.profile.path)}
        return {**base, "error": self._unreachable} if self._unreachable else {**base, "note": "no row ran on this device"}


def resolve(names: list[str], dirs: list[Path], log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Target objects for ``names``: cpu and gpu, else the device profile of that name in ``dirs``.

    Raises:
        DeviceProfileError: no such profile, or an invalid one.
    """
    from edgekit.targets import devices

    return {name: TARGETS[name] if name in TARGETS else DeviceTarget(devices.get_profile(name, dirs), log) for name in names}
