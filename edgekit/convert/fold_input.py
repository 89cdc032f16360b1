"""Fold an affine input scaling at the model's start into the first layer that computes.

Models often scale their own input: Keras Applications map [0, 1] images to [-1, 1] (the zoo
does it with a frozen 1x1 depthwise convolution, which tfmot can quantize), a ``Rescaling`` or
a ``Normalization`` layer sits behind the input. Exported as it is, every artifact runs that
scaling as an op of its own: on MobileNetV2 alpha 0.35 at 96x96 a 3-channel DEPTHWISE_CONV_2D
of 40 us in LiteRT, 13-16% of the whole model, and an f32 GroupConvolution in OpenVINO's int8
graph. Yet ``y = a * x + b`` (per channel) followed by a convolution or a dense layer is one
convolution with ``W' = W * a`` (over its input channels) and ``bias' = bias + sum(W * b)``.

``fold_input(model)`` returns a copy of ``model`` with that done, and a record of what was
folded (or why nothing was). The copy takes the raw input the original took (its int8
artifacts then quantize the raw input directly: the scaling lives in the input quantization
and the first layer's weights). Exactness: ``a * x + b = a * (x - p)`` with ``p = -b / a``;
``a`` always goes into the weights (a padded zero stays zero). ``b`` goes into the bias only
where the layer adds no padding (``valid``, a 1x1 kernel, a Dense layer): a convolution that
pads pads the *scaled* input with zeros, which are the raw value ``p``, so there the copy keeps
``x - p`` as one elementwise add in front (a scalar where every channel has the same ``p``:
3 us in XNNPACK at 96x96x3, where the depthwise convolution took 40). The scaling layers
become identities (linear ``Activation`` layers under their own names, which converters
drop), the add is a ``Rescaling`` named ``<layer>_input_shift``; every other layer keeps its
name and weights.

What counts as the scaling: the layers right after the model's (only) input, each with that
one consumer, that are affine per channel on the last axis: ``Rescaling``, ``Normalization``
(statistics per last axis; both read by ``edgekit.models.input_preprocessing.layer_map``, as the
data side reads them), a 1x1 ``DepthwiseConv2D`` (stride 1, depth multiplier
1, linear) and linear ``Activation`` layers. What it folds into: the next layer, a ``Conv2D``
(channels last, one group) or a ``Dense``, when the scaling is its only input. Anything else,
and models nested in the model, are left as they are (the record says why).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekit.models.input_preprocessing import AFFINE_LAYERS, layer_map

#: layer classes the fold passes as a per-channel affine map: the in-model preprocessing
#: ``edgekit.models.input_preprocessing`` reads, and the zoo's frozen 1x1 depthwise scaling
AFFINE = (*AFFINE_LAYERS, "DepthwiseConv2D", "Activation")
#: the largest ratio between the raw channels' calibration ranges for which an int8 artifact
#: takes the raw input folded (one int8 scale for every channel, as the scaled input had)
INT8_RANGE_RATIO = 4.0


def fold_input(model, calibration: np.ndarray | None = None, int8: bool = False) -> tuple[Any, dict]:
    """``model`` with its input scaling folded into its first computing layer, and a record.

    Args:
        model: a functional or Sequential Keras model (tf_keras or Keras 3).
        calibration: raw input samples; for ``int8``, the raw channels' ranges decide whether
            one int8 scale fits them all (``INT8_RANGE_RATIO``).
        int8: the artifact quantizes its input to int8.

    Returns:
        ``(model or its folded copy, record)``: the record has ``folded`` (bool), and either
        ``reason`` (why not) or ``layers`` (the scaling layers), ``into`` (the layer that took
        them), ``scale`` and ``offset`` (per channel, ``scaled = raw * scale + offset``),
        ``shift`` (the raw value subtracted in front, where the offset cannot go into the bias),
        ``raw_range`` (the raw calibration range, when given: what the artifact takes).
    """
    try:
        found = _find(model)
    except (AttributeError, ValueError, TypeError, IndexError, KeyError) as exc:
        return model, {"folded": False, "reason": f"the model's start could not be read ({type(exc).__name__}: {exc})"}
    if isinstance(found, str):
        return model, {"folded": False, "reason": found}
    chain, target, scale, offset = found
    record: dict[str, Any] = {"layers": [layer.name for layer in chain], "into": target.name,
                              "scale": _short(scale), "offset": _short(offset)}
    if calibration is not None and len(calibration):
        raw = np.asarray(calibration, np.float32).reshape(-1, scale.size)
        low, high = raw.min(axis=0), raw.max(axis=0)
        record["raw_range"] = [float(low.min()), float(high.max())]
        spans = np.maximum(high - low, 1e-12)
        if int8 and spans.max() / spans.min() > INT8_RANGE_RATIO:
            return model, {"folded": False, **record, "reason": (
                f"the raw input's channels span ranges {spans.max() / spans.min():.0f}x apart: one int8 input "
                "scale would not fit them all, so the scaling stays in front, in float")}
    if np.any(np.abs(scale) < 1e-12):
        return model, {"folded": False, **record, "reason": "the scaling multiplies a channel by 0"}
    pads = _pads(target)
    if isinstance(pads, str):
        return model, {"folded": False, **record, "reason": pads}
    # a * x + b = a * (x - p): the scale always goes into the weights (zero padding stays zero);
    # the offset into the bias only where no padding is added (a padded zero is not a raw zero)
    shift = -offset / scale if pads and not np.allclose(offset, 0, rtol=0, atol=0) else None
    try:
        folded = _rebuild(model, chain, target, scale, offset, shift)
    except Exception as exc:  # noqa: BLE001 - a layer that cannot be copied (custom code): the model as it is
        from edgekit.errors import one_line

        return model, {"folded": False, **record, "reason": f"the model could not be copied: {one_line(exc)}"}
    if shift is not None:
        record["shift"] = {"value": _short(shift), "why": (
            f"{target.name} pads its input with zeros, which the scaled input has at raw {_short(shift)}: the raw "
            "input is shifted by that (one elementwise add) and the scale folded into the weights")}
    record["folded"] = True
    return folded, record


def _short(values: np.ndarray):
    """One number where every channel has it, else the list."""
    values = np.asarray(values, np.float64).ravel()
    return float(values[0]) if np.allclose(values, values[0], rtol=0, atol=1e-12) else [float(v) for v in values]


def _find(model):
    """(scaling layers, the layer they fold into, scale, offset) or why there is nothing to fold."""
    inputs = list(getattr(model, "inputs", None) or [])
    if not inputs:
        return "the model has no input layer to read its start from (a subclassed model?)"
    if len(inputs) != 1:
        return f"the model has {len(inputs)} inputs (the fold reads one)"
    channels = inputs[0].shape[-1]
    if channels is None:
        return "the input's last axis has no fixed size"
    graph = layer_graph(model)
    if graph is None:
        return "the model's layers are not a functional graph the fold can read (a subclassed model?)"
    layers = {layer.name: layer for layer in model.layers}
    scale, offset = np.ones(int(channels)), np.zeros(int(channels))
    name = _only_reader(graph, graph["input"])
    chain = []
    while name is not None and type(layers[name]).__name__ in AFFINE:
        affine = _affine(layers[name], int(channels))
        if affine is None:
            break
        a, b = affine
        scale, offset = scale * a, offset * a + b
        chain.append(layers[name])
        name = _only_reader(graph, name)
    if not chain:
        return "no input scaling at the model's start"
    if np.allclose(scale, 1) and np.allclose(offset, 0):
        return "the input scaling is an identity"
    if name is None:
        return f"{chain[-1].name} feeds more than one layer"
    layer = layers[name]
    kind = type(layer).__name__
    if kind == "Conv2D":
        config = layer.get_config()
        if config.get("data_format", "channels_last") != "channels_last" or int(config.get("groups", 1)) != 1:
            return f"{layer.name} is not a channels-last convolution of one group"
    elif kind != "Dense":
        return f"the scaling feeds {layer.name} ({kind}), which the fold does not rewrite (a Conv2D or Dense does)"
    if graph["reads"].get(name) != [chain[-1].name]:
        return f"{layer.name} reads more than the scaling"
    return chain, layer, scale, offset


def layer_graph(model) -> dict | None:
    """``{"input": name, "reads": {layer: [the layers it reads, once per call]}}`` from the
    model's config (tf_keras writes inbound nodes as nested lists, Keras 3 as keras_history
    dicts); a Sequential is a chain. None for a model whose config has no graph."""
    try:
        config = model.get_config()
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        return None
    entries = config.get("layers") if isinstance(config, dict) else None
    if not isinstance(entries, list) or not entries:
        return None
    names = [(entry.get("config") or {}).get("name") or entry.get("name") for entry in entries]
    if "input_layers" not in config:  # Sequential: each layer reads the one before it
        start = 1 if entries[0].get("class_name") == "InputLayer" else 0
        chain = names[start:]
        first = names[0] if start else "<input>"
        reads = {name: [previous] for previous, name in zip([first, *chain], chain)}
        return {"input": first, "reads": reads}
    inputs = config["input_layers"]
    first = inputs[0] if inputs and isinstance(inputs[0], (list, tuple)) else inputs
    reads = {}
    for name, entry in zip(names, entries):
        found: list[str] = []
        _history(entry.get("inbound_nodes") or [], found)
        reads[name] = found
    return {"input": first[0], "reads": reads}


def _history(value, found: list[str]) -> None:
    """The layer names a config's inbound nodes read, in order."""
    if isinstance(value, dict):
        history = (value.get("config") or {}).get("keras_history") if value.get("class_name") == "__keras_tensor__" else None
        if history:
            found.append(history[0])
            return
        for item in value.values():
            _history(item, found)
    elif isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int) and isinstance(value[2], int):
            found.append(value[0])  # tf_keras: [layer name, node index, tensor index, kwargs]
            return
        for item in value:
            _history(item, found)


def _only_reader(graph: dict, name: str) -> str | None:
    """The one layer that reads ``name`` (once), or None."""
    readers = [layer for layer, read in graph["reads"].items() for source in read if source == name]
    return readers[0] if len(readers) == 1 else None


def _affine(layer, channels: int):
    """(a, b) per channel of a per-channel affine layer, or None where it is not one."""
    kind = type(layer).__name__
    config = layer.get_config()
    if kind == "Activation":
        return (np.ones(channels), np.zeros(channels)) if config.get("activation") == "linear" else None
    if kind in AFFINE_LAYERS:  # Rescaling, Normalization: read as the data side reads them
        if kind == "Normalization" and tuple(np.atleast_1d(config.get("axis", -1))) not in ((-1,), (3,), (1,)):
            return None  # statistics along another axis than the channels
        try:
            a, b, _ = layer_map(layer)
        except (TypeError, ValueError, AttributeError):  # a Normalization never adapted
            return None
        if a.size not in (1, channels) or b.size not in (1, channels):
            return None
        return np.broadcast_to(a, (channels,)).copy(), np.broadcast_to(b, (channels,)).copy()
    if kind == "DepthwiseConv2D":
        if tuple(config.get("kernel_size", ())) != (1, 1) or tuple(config.get("strides", (1, 1))) != (1, 1) \
                or int(config.get("depth_multiplier", 1)) != 1 or config.get("activation") not in ("linear", None):
            return None
        weights = layer.get_weights()
        a = np.ravel(np.asarray(weights[0], np.float64))
        b = np.ravel(np.asarray(weights[1], np.float64)) if len(weights) > 1 else np.zeros(channels)
        return (a, b) if a.size == channels and b.size == channels else None
    return None


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> int:
    """How many zeros TensorFlow's ``same`` padding adds along one axis (both sides)."""
    effective = (kernel - 1) * dilation + 1
    return max((math.ceil(size / stride) - 1) * stride + effective - size, 0)


def _pads(target) -> bool | str:
    """Whether ``target`` pads its input (``same`` padding that adds zeros), or why it cannot be told."""
    if type(target).__name__ == "Dense":
        return False
    config = target.get_config()
    if str(config.get("padding", "valid")).lower() == "valid":
        return False
    try:
        shape = tuple(target.input.shape)
    except (AttributeError, ValueError):
        shape = ()
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return f"{target.name} pads an input of unknown height or width"
    kernel, strides = config["kernel_size"], config.get("strides", (1, 1))
    dilation = config.get("dilation_rate", (1, 1))
    return any(_same_padding(int(shape[1 + i]), int(kernel[i]), int(strides[i]), int(dilation[i])) for i in (0, 1))


def _rebuild(model, chain, target, scale: np.ndarray, offset: np.ndarray, shift):
    """The copy: the scaling layers as identities (the last one the shift, where one is kept),
    the target with the folded weights."""
    from edgekit.convert.preprocess import _keras_of

    keras = _keras_of(model)
    weights = target.get_weights()
    kernel = np.asarray(weights[0], np.float64)
    bias = np.asarray(weights[1], np.float64) if len(weights) > 1 else np.zeros(kernel.shape[-1])
    folded_offset = offset if shift is None else np.zeros_like(offset)
    if type(target).__name__ == "Dense":
        new_kernel = kernel * scale[:, None]
        new_bias = bias + folded_offset @ kernel
    else:
        new_kernel = kernel * scale[None, None, :, None]
        new_bias = bias + np.einsum("hwio,i->o", kernel, folded_offset)
    new_weights = [new_kernel.astype(np.float32), new_bias.astype(np.float32)]
    last = chain[-1]

    def clone(layer):
        if layer is target:
            config = dict(layer.get_config(), use_bias=True)
            config.pop("bias_initializer", None)
            return layer.__class__.from_config(config)
        if layer is last and shift is not None:
            # x - p before the convolution, which pads it with zeros as it padded a * (x - p)
            # (a scalar where every channel has the same: XNNPACK adds a scalar at memory speed, a
            # 3-channel vector broadcast over a 96x96 image took 34 us, as long as the depthwise conv)
            offset_value = _short(-np.asarray(shift, np.float64))
            return keras.layers.Rescaling(1.0, offset_value, name=f"{target.name}_input_shift")
        if any(layer is other for other in chain):
            return keras.layers.Activation("linear", name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    folded = keras.models.clone_model(model, clone_function=clone)
    for layer, original in zip(folded.layers, model.layers):
        if original is target:
            layer.set_weights(new_weights)
        elif original.weights and not any(original is other for other in chain):
            layer.set_weights(original.get_weights())
    return folded
