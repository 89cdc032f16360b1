"""The ``gpu`` target: the fp32 baseline on a GPU, the reference users compare edge numbers
against: the Keras model on TensorFlow's first GPU, and the base model's ONNX fp32 artifact on
onnxruntime's CUDAExecutionProvider when that is installed. Skipped, with the reason, when
there is no GPU. Its rows carry their own outputs, so their metrics are the GPU's.
"""

from __future__ import annotations

from typing import Any

from edgekit.bench import stats
from edgekit.formats import FORMATS
from edgekit.targets.base import Measurement, Target


class GpuTarget(Target):
    kind = "gpu"
    evaluates = True
    is_reference = True
    order = 1

    def __init__(self, name: str = "gpu"):
        self.name = name

    def supports(self, variant) -> bool:
        """The fp32 baseline: the Keras model, and the base model's fp32 artifact of every format
        whose row says it runs on the gpu (``Format.runs_on``: ONNX)."""
        fmt = FORMATS.get(variant.format)
        if fmt is None:  # the Keras model itself
            return True
        return self.kind in fmt.runs_on and variant.precision == "fp32" and variant.model == "base"

    def unsupported_reason(self, variant) -> str:
        return f"target {self.name} times the recipe's fp32 baseline only; use cpu or a device"

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        if variant.format in FORMATS:  # onnxruntime's CUDA provider: the table's one GPU runtime today
            return _onnx_on_gpu(variant, spec, samples, eval_inputs)
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        if not gpus:
            return Measurement("skipped", "no GPU visible to TensorFlow; the speedup column is relative to the CPU baseline")
        from edgekit.runtimes.keras import open_session

        with tf.device(gpus[0].name):
            session = open_session(variant.session.model, spec.threads)
            outputs = session.predict(eval_inputs) if eval_inputs is not None else None
            latencies = stats.time_session(session, samples, spec.warmup, spec.runs, spec.min_time_s)
        return Measurement("ok", latencies_ms=latencies, outputs=outputs, settings={"device": gpus[0].name})

    def environment(self) -> dict:
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
    latencies = stats.time_session(session, samples, spec.warmup, spec.runs, spec.min_time_s)
    return Measurement("ok", latencies_ms=latencies, outputs=outputs, runtime=session.runtime,
                       settings={**session.settings, "device": "CUDAExecutionProvider"})
