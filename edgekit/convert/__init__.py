"""Converters: one module per format, each a plain function.

Contract (see formats.py): ``convert(model, path, precision, calibration, options,
prequantized=False) -> settings`` writes one artifact file at ``path`` from a Keras model and
returns the conversion settings worth recording. ``calibration`` is float32 samples from the
training split; ``prequantized`` models (QAT) carry their own int8 ranges, which converters
keep instead of calibrating new ones.

Converters that quantize to int8 also take ``keep_float=(keras layer names, ...)``: the ops of
those layers stay float through the format's own mechanism (TFLite denylisted nodes of its
selective quantizer, onnxruntime ``nodes_to_exclude``, NNCF ``ignored_scope``). Node names are
mapped to Keras layer names by their TensorFlow scope (``node_layer``); the settings then record
``kept_float`` (the names) and ``float_layers`` (how many of them the written artifact really
computes in float, read back from it by the module's ``layer_float(path, layers, outer)``), and
``not_float`` for any it does not. The build hands the keyword over only when it is not empty.
A prequantized (QAT) model is not changed by it: its ranges are part of its graph, and the
settings say ``keep_float: not applied: ...``.

The ``int8-mixed`` precision is int8 with some layers float: ``edgekit.convert.mixed`` searches
the fewest ``keep_float`` layers that bring the validation metric within ``quantize.max_drop``,
through each format's int8 converter. Called with ``precision="int8-mixed"`` itself, a converter
makes the int8 artifact of the ``keep_float`` it is given.
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


def batch1_signature(model, shapes=None):
    """A traced ``model(x, training=False)`` with batch size 1, for any Keras flavour.

    Edge deployments run batch 1, and a fixed batch keeps recurrent and reshape-heavy
    models convertible. ``shapes`` (``sample_shapes`` of the data: {input name: shape without
    the batch}) fixes the model's free dimensions (``Input((None, None, 3))``), so every
    artifact is static at the data's shape. A model of one input takes one tensor named
    "input" and returns one tensor; with several inputs or outputs the function takes one
    tensor per input, each named after the Keras input, and returns a dict keyed by the Keras
    output names (``model_outputs``): every format keeps those names (TFLite's signature,
    ONNX's graph inputs and outputs, OpenVINO's tensor names), and the sessions match by name.
    """
    import tensorflow as tf

    inputs = model_inputs(model, shapes)
    outputs = model_outputs(model)
    if len(inputs) == 1:
        fn = tf.function(lambda x: named_outputs(model, outputs, model(x, training=False)))
        info = inputs[0]
        return fn.get_concrete_function(tf.TensorSpec([1, *info.shape[1:]], tf.as_dtype(info.dtype), name="input"))
    fn = tf.function(lambda *xs: named_outputs(model, outputs, model(call_structure(model, inputs, xs), training=False)))
    return fn.get_concrete_function(*[tf.TensorSpec([1, *i.shape[1:]], tf.as_dtype(i.dtype), name=i.name) for i in inputs])


def model_inputs(model, shapes=None) -> list:
    """The Keras model's inputs as ``edgekit.runtimes.TensorInfo`` (batch first, None where
    free), in the model's order; ``shapes`` ({name: sample shape}, or one shape for a model
    of one input) fills the free dimensions."""
    from edgekit.runtimes import TensorInfo

    names = input_names(model)
    out = []
    for name, tensor in zip(names, model.inputs):
        dims = list(tensor.shape)
        given = shapes.get(name) if isinstance(shapes, dict) else shapes if len(names) == 1 else None
        if given is not None and len(given) == len(dims) - 1:
            dims = [dims[0], *(g if d is None else d for d, g in zip(dims[1:], given))]
        dtype = getattr(tensor, "dtype", None) or "float32"
        out.append(TensorInfo(name, getattr(dtype, "as_numpy_dtype", dtype), dims))
    return out


def input_names(model) -> list[str]:
    """The Keras model's input names, in its order (``model.input_names`` of tf_keras, the
    input tensors' names in Keras 3)."""
    names = list(getattr(model, "input_names", None) or [])
    if len(names) != len(model.inputs):
        names = [str(getattr(t, "name", "") or f"input_{k}").split(":")[0] for k, t in enumerate(model.inputs)]
    return names


def model_outputs(model) -> list:
    """The Keras model's outputs as TensorInfo, named as a call returns them: a dict output's
    keys (sorted, as TensorFlow flattens a dict), else ``model.output_names``."""
    from edgekit.runtimes import TensorInfo

    struct = getattr(model, "_outputs_struct", None)  # Keras 3
    if struct is None:
        struct = getattr(model, "_nested_outputs", None)  # tf_keras
    if isinstance(struct, dict):
        pairs = [(str(k), struct[k]) for k in sorted(struct)]
    else:
        names = list(getattr(model, "output_names", None) or [])
        if len(names) != len(model.outputs) or len(set(names)) != len(names):
            names = [f"output_{k}" for k in range(len(model.outputs))]
        pairs = list(zip(names, model.outputs))
    return [TensorInfo(name, "float32", list(t.shape)) for name, t in pairs]


def call_structure(model, inputs, tensors):
    """``tensors`` (one per input, in ``inputs`` order) as the model is called: a dict where the
    model was built on a dict of inputs, else a list."""
    struct = getattr(model, "_inputs_struct", None)  # Keras 3
    if struct is None:
        struct = getattr(model, "_nested_inputs", None)  # tf_keras
    if isinstance(struct, dict):
        by_tensor = {id(t): k for k, t in struct.items()}
        keys = [by_tensor.get(id(t), i.name) for t, i in zip(model.inputs, inputs)]
        return dict(zip(keys, tensors))
    return list(tensors)


def named_outputs(model, outputs, result):
    """A call's result as the signature returns it: the tensor of a model of one output, else
    a dict keyed by the names of ``outputs`` (``model_outputs``)."""
    if isinstance(result, dict):
        values = [result[k] for k in sorted(result, key=str)]
    elif isinstance(result, (list, tuple)):
        values = list(result)
    else:
        values = [result]
    if len(outputs) == 1 and len(values) == 1:
        return values[0]
    return {info.name: value for info, value in zip(outputs, values)}


def sample_shapes(samples) -> dict | tuple:
    """The shape of one sample (without the batch) of a batch: per input name for a structured
    batch of several inputs, else one tuple."""
    names = getattr(getattr(samples, "dtype", None), "names", None)
    if names:
        return {name: tuple(samples.dtype[name].shape) for name in names}
    return tuple(np.shape(samples)[1:])


def feeds(samples, inputs) -> list:
    """Calibration feeds: per sample a list of batch-1 arrays in the order of ``inputs``
    (TensorInfo), each in its input's dtype (integer inputs exact, see ``as_input_dtype``)."""
    from edgekit.runtimes import split_fields

    arrays = [as_input_dtype(a, i.dtype) for a, i in zip(split_fields(samples, inputs), inputs)]
    return [[np.ascontiguousarray(a[k:k + 1]) for a in arrays] for k in range(len(samples))]


#: the most bytes of layer outputs one batch of a many-sample Keras call may hold (summed over
#: every layer, float32; TensorFlow frees most of them during the call, so the real cost is a
#: fraction): a 224x224 MobileNetV2 (87 MB a sample) runs 6 samples a call, the zoo's models
#: (at most 1.1 MB a sample) keep batches of 256
BATCH_BYTES = 512 << 20


def activation_bytes(model) -> int:
    """Bytes of every layer's output for one sample (float32), nested models included: what a
    Keras call holds per sample at most, and what the per-layer error reads keep per sample.
    An output whose shape is unknown (a dynamic axis, a layer called twice) counts as large as
    the model's input; at least 4 bytes."""
    def elements(shape) -> int | None:
        dims = list(shape)[1:]
        return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))

    try:
        fallback = elements(model.inputs[0].shape) or 1
    except (AttributeError, IndexError, TypeError, ValueError):
        fallback = 1
    total = fallback  # the input itself

    def walk(parent) -> None:
        nonlocal total
        for layer in getattr(parent, "layers", []):
            if type(layer).__name__ in _NO_OPS:
                continue
            if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested model
                walk(layer)
                continue
            try:
                outputs = layer.output
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                total += sum(elements(o.shape) or fallback for o in outputs)
            except (AttributeError, ValueError, TypeError, RuntimeError):  # no single output
                total += fallback

    walk(model)
    return max(4, 4 * total)


def batch_size(model, limit: int = 256, budget: int = BATCH_BYTES) -> int:
    """How many samples one call of ``model`` on many samples takes: ``limit``, fewer where a
    batch's layer outputs (``activation_bytes``) would pass ``budget``; at least 1. Memory then
    follows the model, never the number of samples."""
    return max(1, min(limit, budget // activation_bytes(model)))


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


# -- Keras layer names <-> the node names of an artifact (keep_float, int8-mixed) ------------------

#: Keras layer classes that make no op of their own (nothing to keep float)
_NO_OPS = ("InputLayer",)


def keras_layer_names(model) -> list[str]:
    """The names a recipe's ``quantize.keep_float`` may list: every layer of ``model`` (input
    layers excluded), a nested model and its own layers included, in model order. A layer's
    inner parts (an LSTM's cell, an attention layer's projections) are not listed: converters
    name their ops after the layer itself."""
    names: list[str] = []

    def walk(parent) -> None:
        for layer in getattr(parent, "layers", []):
            if type(layer).__name__ not in _NO_OPS and layer.name not in names:
                names.append(layer.name)
            if hasattr(layer, "layers") and hasattr(layer, "inputs"):  # a nested model
                walk(layer)

    walk(model)
    return names


def node_layer(name: str, layers, outer=()) -> str | None:
    """The Keras layer of ``layers`` that made the node (or tensor) called ``name``, or None.

    Every converter names a node by its TensorFlow scope: ``<model>/<layer>/<op>`` (tf2onnx
    ``lenet/conv2d/Conv2D``, OpenVINO ``lenet/conv2d/BiasAdd``), TFLite joins the names of fused
    ops with ";" (``lenet/conv2d/Relu;lenet/conv2d/BiasAdd;...``), a model behind the embedded
    normalization has one more outer model name (``mlp/mlp/dense/MatMul``), and tools add
    prefixes (``NumericVerify/...``) or suffixes (``...:0_QuantizeLinear``). So: split into
    scope segments, drop the leading segments that are ``outer`` model names (or the first
    one), drop the op (the last segment), and take the first segment that is a layer name.
    """
    # ``layers`` as names, or as a mapping of traced scope -> layer name (``traced``)
    layers = dict(layers) if isinstance(layers, dict) else {layer: layer for layer in layers}
    outer = set(outer)
    for part in str(name).split(";"):
        segments = part.split("/")[:-1]
        start = 1 if segments and segments[0] not in layers else 0
        while start < len(segments) and segments[start] in outer and segments[start] not in layers:
            start += 1
        for segment in segments[start:]:
            if segment in layers:
                return layers[segment]
    return None


def traced(layers, names) -> dict[str, str]:
    """Traced scope -> Keras layer name, for the nodes called ``names``.

    tf_keras traces a layer under its own name; Keras 3 under a uniquified one (``hidden`` as
    ``hidden_1``, its model ``functional`` as ``functional_1``). The suffix that finds the most
    layers among the names' scopes is taken for every layer (a layer it does not find keeps its
    exact name), so that a Keras 3 ``dense`` traced as ``dense_1`` is never the layer ``dense_1``.
    Pass the result to ``node_layer`` and ``nodes_of`` as their ``layers``."""
    layers = list(layers)
    present = {segment.split(":")[0] for name in names for part in str(name).split(";") for segment in part.split("/")[:-1]}

    def found(suffix: str) -> int:
        return sum(f"{layer}{suffix}" in present for layer in layers)

    suffix = max(["", "_1", "_2", "_3"], key=lambda s: (found(s), s == ""))
    mapping = {f"{layer}{suffix}": layer for layer in layers if f"{layer}{suffix}" in present}
    for layer in layers:
        mapping.setdefault(layer, layer)
    return mapping


def node_layers(name: str, layers, outer=()) -> list[str]:
    """Every Keras layer of ``layers`` named in ``name``: one per ";"-joined part (TFLite names a
    fused op after all of them: a conv, its batch normalization and its activation)."""
    found = []
    for part in str(name).split(";"):
        layer = node_layer(part, layers, outer)
        if layer is not None and layer not in found:
            found.append(layer)
    return found


def nodes_of(names, layers, outer=()) -> list[str]:
    """The node names among ``names`` that belong to one of ``layers`` (see ``node_layer``;
    scopes as the names trace them, see ``traced``)."""
    names = list(names)
    layers = layers if isinstance(layers, dict) else traced(layers, names)
    return [name for name in names if node_layer(name, layers, outer) is not None]


def outer_names(model) -> tuple[str, ...]:
    """The names of ``model`` and the models nested in it: scope prefixes, not layers."""
    names = [model.name]
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers"):
            names.append(layer.name)
    return tuple(names)


def kept_float_record(keep, verified) -> dict:
    """What an int8 row's settings say about ``quantize.keep_float``: the layers asked for
    (``kept_float``) and how many of them the artifact really computes in float
    (``float_layers``, read back from the file); any that are not, by name."""
    record = {"kept_float": list(keep), "float_layers": len(verified)}
    missing = [layer for layer in keep if layer not in verified]
    if missing:
        record["not_float"] = missing
    return record
