"""Converters: one module per format, each a plain function.

Contract (see formats.py): ``convert(model, path, precision, calibration, options,
prequantized=False) -> settings`` writes one artifact file at ``path`` from a Keras model and
returns the conversion settings worth recording. ``calibration`` is float32 samples from the
training split; ``prequantized`` models (QAT) carry their own int8 ranges, which converters
keep instead of calibrating new ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_atomic(path: Path, content: bytes) -> None:
    """Write through a temporary name so a killed build never leaves a half file behind."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def batch1_signature(model):
    """A traced ``model(x, training=False)`` with batch size 1, for any Keras flavour.

    Edge deployments run batch 1, and a fixed batch keeps recurrent and reshape-heavy
    models convertible.
    """
    import tensorflow as tf

    shape = [1, *model.inputs[0].shape[1:]]
    fn = tf.function(lambda x: model(x, training=False))
    return fn.get_concrete_function(tf.TensorSpec(shape, input_dtype(model), name="input"))


def input_dtype(model):
    """The Keras model's own input dtype, as a ``tf.DType``.

    Every artifact takes the input the model takes: a text model's int32 token ids stay
    int32 (a float32 signature would add a CAST in front of every artifact, and full-integer
    TFLite would then quantize the ids themselves into 256 buckets).
    """
    import tensorflow as tf

    dtype = getattr(model.inputs[0], "dtype", None)
    return tf.as_dtype(dtype) if dtype is not None else tf.float32


def as_input_dtype(samples: np.ndarray, dtype) -> np.ndarray:
    """Samples cast to a model input dtype (numpy or TensorFlow), e.g. for calibration.

    Integer inputs are exact in float32 up to 2**24 (see ``edgekit.runtimes.cast_input``).
    """
    from edgekit.runtimes import cast_input

    return cast_input(samples, getattr(dtype, "as_numpy_dtype", dtype))


def variables_holder(model):
    """A ``tf.Module`` that tracks the model's underlying ``tf.Variable`` objects.

    TFLite freezes a concrete function's captured variables through this object. Keras 3
    wraps each ``tf.Variable`` in its own Variable class; handing the Keras 3 model itself to
    the converter produced wrong outputs (all-NaN or one-hot), so unwrap to the real ones.
    """
    import tensorflow as tf

    holder = tf.Module()
    holder.tracked = [v if isinstance(v, tf.Variable) else v.value for v in model.variables]
    return holder
