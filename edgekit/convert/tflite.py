"""Keras -> TFLite (LiteRT) flatbuffer, at fp32, fp16, dynamic-range, full-integer int8 or 16x8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.convert import (
    as_input_dtype,
    batch1_signature,
    input_dtype,
    variables_holder,
    write_atomic,
)
from edgekit.convert.preprocess import (
    has_normalization,
    tflite_int8_float_normalization,
)

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None,
            prequantized: bool = False) -> dict:
    """Convert a Keras model to a .tflite file.

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .tflite file is written.
        precision: "fp32"; "fp16" (fp16 weights); "dynamic" (int8 weights, float
            activations); "int8" (full-integer: int8 output, int8 input where the model's
            input is float; integer inputs such as token ids stay int32); "int16x8"
            (int16 activations, int8 weights, the model's input dtype and float output).
        calibration: representative samples (training split) for activation ranges; for a
            prequantized model only the input and output tensors take their ranges from it.
        options: unused; TFLite has no format options yet.
        prequantized: the model is quantization-aware; its fake-quant ranges are kept.

    Returns:
        The converter settings used.
    """
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(f"tflite converter has no precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    concrete = batch1_signature(model)
    dtype = input_dtype(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables_holder(model))
    settings = {"converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__}
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision in ("int8", "int16x8"):
        samples = as_input_dtype(calibration, dtype)
        converter.representative_dataset = lambda: ([sample[None]] for sample in samples)
        settings["calibration_samples"] = len(calibration)
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        settings["quantization"] = "fp16 weights"
    elif precision == "dynamic":
        settings["quantization"] = "dynamic range (int8 weights, float activations)"
    elif precision == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Only a float input is quantized: integer ids quantized to int8 (scale ~4 for a
        # vocabulary of 1,000) would merge neighbouring ids. An integer input keeps its dtype.
        if dtype.is_floating:
            converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        io_type = "int8" if dtype.is_floating else f"{dtype.name} input, int8 output"
        settings.update(quantization="full-integer " + ("from QAT ranges" if prequantized else "PTQ"), io_type=io_type)
        if has_normalization(model) and not prequantized:
            # Raw features behind an embedded normalization share no int8 scale: it stays float.
            # (Not for QAT models: the selective quantizer refuses them, "Please check if the
            # quantized model is in debug mode"; their int8 input quantizes raw features.)
            def make():
                fresh = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables_holder(model))
                fresh.optimizations = [tf.lite.Optimize.DEFAULT]
                fresh.representative_dataset = converter.representative_dataset
                return fresh

            write_atomic(Path(path), tflite_int8_float_normalization(make, converter.representative_dataset))
            settings.update(quantization="full-integer PTQ, the embedded normalization in float",
                            io_type="float32 input and output (raw features), int8 inside")
            return settings
    elif precision == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        settings["quantization"] = "int16 activations, int8 weights"
    write_atomic(Path(path), converter.convert())
    return settings


def read_weights(path: Path) -> list[np.ndarray]:
    """The constant tensors of a .tflite file (zero points removed), read without delegates."""
    from edgekit.evaluate.weights import zero_point_shifted
    from edgekit.runtimes.litert import interpreter_class

    interpreter_class_, _ = interpreter_class()
    interpreter = interpreter_class_(model_path=str(path), **_no_delegates())
    interpreter.allocate_tensors()
    # Constants are op inputs that no op produces and that are not graph inputs (the private
    # ops list is the only way the interpreter API exposes the graph).
    ops = interpreter._get_ops_details()
    produced = {t for op in ops for t in op["outputs"]}
    inputs = {d["index"] for d in interpreter.get_input_details()}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    tensors = []
    for index in sorted({t for op in ops for t in op["inputs"] if t >= 0} - produced - inputs):
        values = interpreter.get_tensor(index)
        q = details[index]["quantization_parameters"]
        tensors.append(zero_point_shifted(values, q["zero_points"], q["quantized_dimension"]))
    return tensors


def _no_delegates() -> dict:
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        from tflite_runtime.interpreter import OpResolverType
    return {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
