"""Does a classifier output logits or probabilities?

Keras users end a classifier either in a softmax (probabilities) or in a linear layer (logits,
trained with ``from_logits=True``). Training a logits model with a probabilities loss fails
silently (digits: 0.16 instead of 0.97), so the train stage, compression fine-tuning and the
results file ask ``output_kind`` first.

The graph decides where it can: the layer that makes the model's output, looked through
shape-only layers (Reshape, Flatten, Dropout, a linear Activation) and through tfmot's
pruning/QAT wrappers. Softmax (a Softmax layer, an Activation('softmax'), a layer built with
``activation="softmax"``, a ``tf.nn.softmax`` op) means probabilities; a linear layer (or
log_softmax, whose softmax is the same distribution) means logits; a sigmoid counts as
probabilities (scores in [0, 1], which the probabilities loss normalizes). Any other ending (relu,
a custom layer) is decided by the outputs on a few samples: probabilities lie in [0, 1] and sum
to 1 (per pixel for segmentation). Works on tf_keras and Keras 3 models alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOGITS = "logits"
PROBABILITIES = "probabilities"

#: the tasks whose output is a distribution over classes (per sample, or per pixel)
CLASS_TASKS = ("classification", "segmentation")

#: layers that only move values around: the kind of their input is the kind of their output
_PASS_THROUGH = {"Reshape", "Flatten", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                 "GaussianDropout", "AlphaDropout", "Identity", "Permute", "InputLayer"}
_SOFTMAX_OPS = {"nn.softmax", "math.softmax", "softmax"}
#: how many samples the output check runs
SAMPLES = 32


@dataclass(frozen=True)
class Output:
    """What a model outputs: ``kind`` (logits or probabilities) and ``why`` (for the build log)."""

    kind: str
    why: str

    @property
    def from_logits(self) -> bool:
        return self.kind == LOGITS


def output_kind(model, x: np.ndarray | None = None) -> Output:
    """Logits or probabilities, from the model's last layer(s), else from its outputs on ``x[:32]``.

    Without samples a model whose graph does not tell is taken to output probabilities (what
    edgekit assumed before it asked).
    """
    found = _from_graph(model)
    if found is not None:
        return found
    if x is None or len(x) == 0:
        return Output(PROBABILITIES, "the last layer does not tell and no samples were given: assumed")
    outputs = model(x[:SAMPLES], training=False)
    outputs = np.asarray(outputs[0] if isinstance(outputs, (list, tuple)) else outputs, dtype=np.float64)
    n = min(len(x), SAMPLES)
    if looks_like_probabilities(outputs):
        return Output(PROBABILITIES, f"outputs on {n} training samples lie in [0, 1] and sum to 1")
    return Output(LOGITS, f"outputs on {n} training samples do not lie in [0, 1] and sum to 1")


def looks_like_probabilities(outputs: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Every value in [0, 1] and every distribution (the last axis) summing to 1."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.size == 0 or not np.all(np.isfinite(outputs)):
        return False
    in_range = outputs.min() >= -tolerance and outputs.max() <= 1 + tolerance
    return bool(in_range and np.all(np.abs(outputs.sum(axis=-1) - 1) <= tolerance))


def _from_graph(model) -> Output | None:
    layer = _output_layer(model)
    seen = 0
    while layer is not None and seen < 16:
        seen += 1
        inner = _unwrapped(layer)
        name, kind = layer.name, type(inner).__name__
        if kind == "Softmax":
            return Output(PROBABILITIES, f"last layer {name} is a Softmax layer")
        if kind in _PASS_THROUGH:
            layer = _input_layer(layer)
            continue
        if kind in ("TFOpLambda", "SlicingOpLambda"):
            symbol = str(inner.get_config().get("function", ""))
            return Output(PROBABILITIES, f"last layer {name} is {symbol}") if symbol in _SOFTMAX_OPS else None
        if not hasattr(inner, "activation"):
            return None
        activation = _activation_name(inner.activation)
        if activation == "softmax":
            what = "is a softmax Activation" if kind == "Activation" else "ends in softmax"
            return Output(PROBABILITIES, f"last layer {name} {what}")
        if activation == "sigmoid":  # scores in [0, 1]: the probabilities loss normalizes them
            return Output(PROBABILITIES, f"last layer {name} ends in sigmoid (scores in [0, 1])")
        if activation == "log_softmax":
            return Output(LOGITS, f"last layer {name} outputs log-probabilities")
        if activation == "linear":
            if kind == "Activation":  # Activation('linear') changes nothing: look before it
                layer = _input_layer(layer)
                continue
            return Output(LOGITS, f"last layer {name} is linear")
        return None  # relu, tanh, ...: the outputs decide
    return None


def _output_layer(model):
    """The layer that produces the model's (first) output, in tf_keras and Keras 3."""
    try:
        history = model.outputs[0]._keras_history
        return history[0]
    except (AttributeError, IndexError, TypeError):
        return model.layers[-1] if getattr(model, "layers", None) else None


def _input_layer(layer):
    """The single layer feeding ``layer``, or None (several inputs, or none)."""
    try:
        node = layer._inbound_nodes[0]
    except (AttributeError, IndexError):
        return None
    if hasattr(node, "inbound_layers"):  # tf_keras: a layer, or a list of them
        inbound = node.inbound_layers
        if isinstance(inbound, (list, tuple)):
            return inbound[0] if len(inbound) == 1 else None
        return inbound
    parents = getattr(node, "parent_nodes", None) or []  # Keras 3
    return parents[0].operation if len(parents) == 1 else None


def _unwrapped(layer):
    """The layer inside tfmot's pruning and quantization wrappers (or any ``Wrapper``)."""
    while hasattr(layer, "layer") and type(layer).__name__ != "Functional":
        layer = layer.layer
    return layer


def _activation_name(activation) -> str:
    """"linear", "softmax", ...: the name of a layer's activation function, through tfmot's
    QuantizeAwareActivation (which keeps the original function in ``.activation``)."""
    for _ in range(4):
        if activation is None:
            return "linear"
        name = getattr(activation, "__name__", None)
        if name is None and hasattr(activation, "activation"):
            activation = activation.activation
            continue
        name = name or type(activation).__name__
        return {"identity": "linear", "NoOpActivation": "linear"}.get(name, name)
    return type(activation).__name__
