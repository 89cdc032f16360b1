"""Keras -> TFLite (LiteRT) flatbuffer, at fp32, fp16, dynamic-range, full-integer int8 or 16x8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.convert import batch1_signature, variables_holder, write_atomic

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None,
            prequantized: bool = False) -> dict:
    """Convert a Keras model to a .tflite file.

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .tflite file is written.
        precision: "fp32"; "fp16" (fp16 weights); "dynamic" (int8 weights, float
            activations); "int8" (full-integer, int8 input and output tensors); "int16x8"
            (int16 activations, int8 weights, float input and output).
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
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables_holder(model))
    settings = {"converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__}
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision in ("int8", "int16x8"):
        converter.representative_dataset = lambda: ([sample[None]] for sample in calibration.astype(np.float32))
        settings["calibration_samples"] = len(calibration)
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        settings["quantization"] = "fp16 weights"
    elif precision == "dynamic":
        settings["quantization"] = "dynamic range (int8 weights, float activations)"
    elif precision == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        settings.update(quantization="full-integer " + ("from QAT ranges" if prequantized else "PTQ"), io_type="int8")
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
