"""Keras -> ONNX (tf2onnx), at fp32 or static int8 (onnxruntime post-training quantization)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from edgekit.convert import as_input_dtype, input_dtype, write_atomic
from edgekit.convert.preprocess import onnx_normalization_nodes as normalization_nodes
from edgekit.formats import ONNXOptions

PRECISIONS = ("fp32", "int8")
# Quantization settings recorded with every int8 artifact.
QUANT_KEYS = ("quant_format", "per_channel", "calibrate_method", "activation_type", "weight_type", "reduce_range")


class _Calibration:
    """CalibrationDataReader over samples (no batch axis) in the input's dtype, fed one at a time as batch 1."""

    def __init__(self, input_name: str, samples: np.ndarray, dtype=np.float32):
        samples = as_input_dtype(samples, dtype)
        self.feeds = iter({input_name: np.ascontiguousarray(s[None])} for s in samples)

    def get_next(self):
        return next(self.feeds, None)


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None,
            prequantized: bool = False) -> dict:
    """Convert a Keras model to a .onnx file.

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .onnx file is written.
        precision: "fp32", or "int8" for onnxruntime static quantization (the model's input
            dtype and float output; weights and activations int8/uint8 inside).
        calibration: representative float32 samples (training split, no batch axis) for
            the int8 activation ranges.
        options: fields of ``edgekit.formats.ONNXOptions`` (opset, quant_format,
            per_channel, calibrate_method, activation_type, weight_type, reduce_range);
            missing ones take its measured defaults.
        prequantized: the model is quantization-aware: tf2onnx writes its fake-quant ranges
            as QDQ pairs, and no calibration is run.

    Returns:
        The converter settings used.

    Raises:
        ValueError: an unknown precision, option name or option value.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"onnx converter has no precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    opts = ONNXOptions.model_validate(options or {}).model_dump()
    import tensorflow as tf
    import tf2onnx

    # from_function, not from_keras: from_keras looks outputs up by the model's output names,
    # which fails on Keras 3 Sequential models (KeyError 'keras_tensor_N'). The dict names the
    # ONNX output "output"; the batch of 1 matches batch1_signature and how runtimes are timed.
    # The model's own input dtype: int32 token ids stay int32 (tensor(int32)), no CAST in front.
    dtype = input_dtype(model)
    spec = tf.TensorSpec([1, *model.inputs[0].shape[1:]], dtype, name="input")
    fn = tf.function(lambda x: {"output": model(x, training=False)})
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=opts["opset"])
    settings = {"converter": "tf2onnx", "tf2onnx": tf2onnx.__version__, "opset": opts["opset"]}
    if precision == "fp32" or prequantized:
        if prequantized:
            settings["quantization"] = "QDQ from QAT ranges"
        write_atomic(Path(path), proto.SerializeToString())
        return settings

    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp:
        fp32, pre, int8 = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(proto.SerializeToString())
        # onnxruntime's recommended shape inference + graph cleanup before quantizing (and
        # without it quantize_static warns); the symbolic shape pass would need sympy.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        # Histogram calibrators print progress to stdout, which belongs to the CLI.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(pre),
                str(int8),
                _Calibration(proto.graph.input[0].name, calibration, dtype.as_numpy_dtype),
                quant_format=getattr(QuantFormat, opts["quant_format"]),
                per_channel=opts["per_channel"],
                reduce_range=opts["reduce_range"],
                activation_type=types[opts["activation_type"]],
                weight_type=types[opts["weight_type"]],
                calibrate_method=getattr(CalibrationMethod, opts["calibrate_method"]),
                # an embedded normalization stays float: quantizing raw features with one
                # per-tensor scale would merge the values of small-range features
                nodes_to_exclude=normalization_nodes(pre),
            )
        write_atomic(Path(path), int8.read_bytes())
    settings.update(
        {key: opts[key] for key in QUANT_KEYS},
        calibration_samples=len(calibration),
        onnxruntime=onnxruntime.__version__,
    )
    return settings


def read_weights(path: Path) -> list[np.ndarray]:
    """The initializers of an .onnx file; quantized ones minus their DequantizeLinear zero point."""
    import onnx
    from onnx import numpy_helper

    from edgekit.evaluate.weights import zero_point_shifted

    graph = onnx.load(str(path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    zero_points = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in values:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zp = values.get(node.input[2]) if len(node.input) > 2 else None
            zero_points[node.input[0]] = (zp, axis)
    return [
        zero_point_shifted(array, *zero_points[name]) if name in zero_points else array
        for name, array in values.items()
        if array.dtype.kind in "fiu" and array.dtype != np.int64  # int64 initializers are shapes
    ]
