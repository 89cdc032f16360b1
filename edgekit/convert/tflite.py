"""Keras -> TFLite (LiteRT) flatbuffer, at fp32 or full-integer int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.convert import batch1_signature, variables_holder, write_atomic


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None) -> dict:
    """Convert a Keras model to a .tflite file.

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .tflite file is written.
        precision: "fp32", or "int8" for full-integer post-training quantization with int8
            input and output tensors.
        calibration: representative samples (training split) for int8 ranges.
        options: unused; TFLite has no format options yet.

    Returns:
        The converter settings used.
    """
    import tensorflow as tf

    concrete = batch1_signature(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables_holder(model))
    settings = {"converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__}
    if precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample[None]] for sample in calibration.astype(np.float32))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        settings.update(quantization="full-integer PTQ", io_type="int8", calibration_samples=len(calibration))
    elif precision != "fp32":
        raise ValueError(f"tflite converter has no precision {precision!r}")
    write_atomic(Path(path), converter.convert())
    return settings
