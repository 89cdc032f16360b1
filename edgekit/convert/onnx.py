"""Keras -> ONNX (tf2onnx), at fp32 or static int8 (onnxruntime post-training quantization)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgekit.convert import write_atomic

# Defaults measured on small CNNs at batch 1, 1 thread (see the ONNX notes in the docs):
# QOperator u8/s8 per-tensor is the int8 layout onnxruntime's CPU kernels run fastest, and
# MinMax over the calibration split kept accuracy within a point of fp32.
DEFAULTS = {
    "opset": 17,
    "quant_format": "QOperator",
    "per_channel": False,
    "calibrate_method": "MinMax",
    "activation_type": "uint8",
    "weight_type": "int8",
    "reduce_range": False,
}
ALLOWED = {
    "quant_format": ("QDQ", "QOperator"),
    "per_channel": (True, False),
    "calibrate_method": ("MinMax", "Entropy", "Percentile"),
    "activation_type": ("uint8", "int8"),
    "weight_type": ("uint8", "int8"),
    "reduce_range": (True, False),
}
PRECISIONS = ("fp32", "int8")


def _options(precision: str, options: dict | None) -> dict:
    """Defaults overlaid with ``options``, each value checked."""
    if precision not in PRECISIONS:
        raise ValueError(f"onnx converter has no precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    unknown = sorted(set(options or {}) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown onnx option(s) {', '.join(unknown)}; allowed: {', '.join(DEFAULTS)}")
    opts = {**DEFAULTS, **(options or {})}
    for key, allowed in ALLOWED.items():
        # `in` alone would accept 1 for True; booleans must be real booleans.
        if opts[key] not in allowed or type(opts[key]) is not type(allowed[0]):
            raise ValueError(f"onnx option {key}={opts[key]!r} is not one of {', '.join(map(str, allowed))}")
    if type(opts["opset"]) is not int or not 13 <= opts["opset"] <= 18:
        raise ValueError(f"onnx option opset={opts['opset']!r} is not an integer in 13..18")
    return opts


class _Calibration:
    """CalibrationDataReader over float32 samples (no batch axis), fed one at a time as batch 1."""

    def __init__(self, input_name: str, samples: np.ndarray):
        self.feeds = iter({input_name: np.ascontiguousarray(s[None], dtype=np.float32)} for s in samples)

    def get_next(self):
        return next(self.feeds, None)


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None) -> dict:
    """Convert a Keras model to a .onnx file.

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .onnx file is written.
        precision: "fp32", or "int8" for onnxruntime static quantization (float input and
            output; weights and activations int8/uint8 inside).
        calibration: representative float32 samples (training split, no batch axis) for
            the int8 activation ranges.
        options: overrides of ``DEFAULTS``: opset (13..18), quant_format ("QDQ",
            "QOperator"), per_channel, calibrate_method ("MinMax", "Entropy",
            "Percentile"), activation_type / weight_type ("uint8", "int8"), reduce_range.

    Returns:
        The converter settings used.

    Raises:
        ValueError: an unknown precision, option name or option value.
    """
    opts = _options(precision, options)
    import tensorflow as tf
    import tf2onnx

    # from_keras traces model(x, training=False) for tf_keras and Keras 3 alike; the fixed
    # batch of 1 matches batch1_signature and what the runtimes are timed at.
    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], tf.float32, name="input")
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=[spec], opset=opts["opset"])
    settings = {"converter": "tf2onnx", "tf2onnx": tf2onnx.__version__, "opset": opts["opset"]}
    if precision == "fp32":
        write_atomic(Path(path), proto.SerializeToString())
        return settings

    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp:
        fp32, pre, int8 = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(proto.SerializeToString())
        # Folds constants and fuses before ranges are taken; the symbolic pass needs sympy.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(int8),
            _Calibration(proto.graph.input[0].name, calibration),
            quant_format=getattr(QuantFormat, opts["quant_format"]),
            per_channel=opts["per_channel"],
            reduce_range=opts["reduce_range"],
            activation_type=types[opts["activation_type"]],
            weight_type=types[opts["weight_type"]],
            calibrate_method=getattr(CalibrationMethod, opts["calibrate_method"]),
        )
        write_atomic(Path(path), int8.read_bytes())
    settings.update(
        {key: opts[key] for key in ALLOWED},
        calibration_samples=len(calibration),
        onnxruntime=onnxruntime.__version__,
    )
    return settings
