"""Preprocessing that travels with the model: the fitted normalization in front of it.

The model trains on normalized features (``edgekit.data.Normalization``); every artifact and the
Keras baseline row are made from ``raw -> (raw - shift) / scale -> trained model``, so
they take raw features, and int8 calibration sees raw features too. With
``data.embed_normalization: false`` the bare model is exported and ``preprocess.json`` says how
to normalize its inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

#: the file written beside results.json when the normalization is not embedded
PREPROCESS_FILE = "preprocess.json"
#: the names of the layers ``with_normalization`` puts in front of the model (converters that
#: quantize keep their ops float: raw features of different ranges share no int8 scale)
LAYER_NAMES = ("normalize_shift", "normalize_scale")


def with_normalization(model, normalization):
    """``model`` behind a normalization layer built from the fitted statistics.

    ``raw -> (raw - shift) * (1 / scale) -> model``, from two Keras ``Rescaling`` layers
    (within a float32 rounding of ``(x - shift) / scale``, what the model was trained on). Integer
    inputs (token ids) are never normalized: the model is returned as it is.
    Models of either Keras (tf_keras, Keras 3) get a wrapper of the same Keras.
    """
    if normalization is None:
        return model
    if hasattr(normalization, "by_input"):  # several inputs: each float input behind its own
        return _with_input_normalizations(model, normalization)
    dtype = getattr(model.inputs[0], "dtype", "float32")
    if "int" in str(getattr(dtype, "name", dtype)):
        return model
    keras = _keras_of(model)
    shape = tuple(model.inputs[0].shape[1:])
    shift = np.asarray(normalization.shift, np.float32)
    scale = np.asarray(normalization.scale, np.float32)
    raw = keras.Input(shape=shape, dtype="float32", name="raw_features")
    # Two built-in Rescaling layers, x + (-shift) then * (1 / scale), their statistics kept as
    # lists in the layer config: each converter sees constants (a Normalization layer given its
    # mean captures eager tensors, which tf2onnx leaves as missing graph inputs), and loading
    # the saved model needs no custom code. Shapes broadcast: per feature the sample's shape,
    # per channel the last axis.
    centred = keras.layers.Rescaling(1.0, (-shift).tolist(), name="normalize_shift")(raw)
    layer = keras.layers.Rescaling((np.float32(1.0) / scale).astype(np.float32).tolist(), 0.0, name="normalize_scale")
    outputs = model(layer(centred))
    return keras.Model(raw, outputs, name=model.name)


def _with_input_normalizations(model, normalizations):
    """``with_normalization`` for a model of several inputs: each float input behind the
    Rescaling pair of its own statistics (layers ``normalize_shift_<input>``), integer inputs
    as they are. The wrapper's inputs and outputs keep the model's names, so the data's arrays
    and every artifact still match by name; several outputs come out as a dict of those names."""
    from edgekit.convert import call_structure, model_inputs, model_outputs, named_outputs

    keras = _keras_of(model)
    inputs = model_inputs(model)
    raws, fed = [], []
    for info in inputs:
        raw = keras.Input(shape=tuple(info.shape[1:]), dtype=info.dtype.name, name=info.name)
        raws.append(raw)
        norm = normalizations.by_input.get(info.name)
        if norm is None or not np.issubdtype(info.dtype, np.floating):
            fed.append(raw)
            continue
        shift = np.asarray(norm.shift, np.float32)
        scale = np.asarray(norm.scale, np.float32)
        centred = keras.layers.Rescaling(1.0, (-shift).tolist(), name=f"{LAYER_NAMES[0]}_{info.name}")(raw)
        fed.append(keras.layers.Rescaling((np.float32(1.0) / scale).astype(np.float32).tolist(), 0.0,
                                          name=f"{LAYER_NAMES[1]}_{info.name}")(centred))
    outputs = named_outputs(model, model_outputs(model), model(call_structure(model, inputs, fed)))
    return keras.Model(raws, outputs, name=model.name)


def has_normalization(model) -> bool:
    """Whether ``model`` is a ``with_normalization`` wrapper."""
    return any(str(getattr(layer, "name", "")).startswith(LAYER_NAMES) for layer in getattr(model, "layers", []))


def tflite_int8_float_normalization(make_converter, representative, also=None) -> bytes:
    """A full-integer TFLite model whose embedded normalization stays float.

    An int8 input tensor has one scale for every feature: raw features of different ranges
    (wine's proline near 1,000 beside hue near 1) would fall into a few buckets (0.61
    accuracy where fp32 has 1.00). So the input stays float32, the ops of the normalization
    layers (and an op the converter folds them into: the first Dense) run in float, and every
    later op is int8, through TFLite's selective quantization (``QuantizationDebugger`` with
    denylisted nodes). ``make_converter()`` returns a fresh converter set up for int8;
    ``also(tensor_names) -> names`` denylists more of them (``quantize.keep_float`` layers).
    """
    import tensorflow as tf

    def nodes(debugger) -> list[str]:
        names = [d["name"] for d in debugger._quant_interpreter.get_tensor_details()]  # the only view of them
        extra = set(also(names)) if also is not None else set()
        return [name for name in names if any(layer in name for layer in LAYER_NAMES) or name in extra]

    probe = tf.lite.experimental.QuantizationDebugger(converter=make_converter(), debug_dataset=representative)
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes(probe))
    debugger = tf.lite.experimental.QuantizationDebugger(converter=make_converter(), debug_dataset=representative,
                                                         debug_options=options)
    return debugger.get_nondebug_quantized_model()


def onnx_normalization_nodes(path) -> list[str]:
    """The nodes of an ONNX file that compute an embedded normalization (tf2onnx names each
    node after its Keras layer: ``model/normalize_shift/add``)."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [node.name for node in graph.node if any(name in node.name for name in LAYER_NAMES)]


def preprocess_record(normalization) -> dict:
    """What preprocess.json holds: the statistics and the formula to apply before the model."""
    record = normalization.to_dict()
    if hasattr(normalization, "by_input"):  # several inputs: each float input's own statistics
        return {**record, "inputs": {name: preprocess_record(norm) for name, norm in normalization.by_input.items()},
                "apply": "each float input as its entry of inputs says; integer inputs as they are",
                "artifacts_take": "normalized features"}
    return {
        **record,
        "apply": "normalized = (x - shift) / scale, elementwise in float32 on raw features; shift and scale have "
                 f"shape {record['shape']} "
                 f"({'one value per input position' if normalization.per == 'feature' else 'one value per channel, the last axis'}) "
                 "and broadcast over the batch axis",
        "artifacts_take": "normalized features",
    }


def save_wrapped(wrapped, folder: Path) -> Path:
    """Save the Keras baseline (the model behind its normalization) beside the trained model."""
    path = Path(folder) / "model_raw_inputs.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped.save(path)
    return path


def _keras_of(model):
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None and isinstance(model, tf_keras.Model):
        return tf_keras
    import keras

    return keras
