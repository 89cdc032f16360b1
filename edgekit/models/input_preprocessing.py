"""In-model input preprocessing, read from the model: which inputs start with affine layers
(``Rescaling``, ``Normalization``), the one map ``x * scale + offset`` they compute together,
and the raw range they expect (0..255 for ``Rescaling(1/255)``).

A model that divides by 255 inside, fed images in [0, 1], sees values below 0.004 and scores
chance in every format, and its int8 artifacts are calibrated on a range no user feeds: the
data side (``edgekit.data.in_model``) reads this to feed the range the model expects, and the
input contract of every artifact says so. Works on tf_keras and Keras 3 models (functional,
Sequential, a nested model in front); nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: layers computing an affine map of their input, per element or per channel
AFFINE_LAYERS = ("Rescaling", "Normalization")
#: layers that leave the range of values as it is at inference (augmentation is the identity
#: then; a resize or crop moves pixels, not their range): looked through
RANGE_KEEPING_LAYERS = (
    "InputLayer", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomCrop", "RandomHeight", "RandomWidth", "Resizing", "CenterCrop", "GaussianNoise",
    "GaussianDropout", "Dropout", "AlphaDropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "Identity", "Reshape", "Permute",
)
#: the raw ranges an image source can feed: edgekit reads pixels as brightness in [0, 1]
#: (pixel / 255), or as the pixel values 0..255 themselves
PIXEL_RANGES = {"0..1": (0.0, 1.0), "0..255": (0.0, 255.0)}


@dataclass
class InputPreprocessing:
    """The affine layers at the start of one model input, composed.

    Attributes:
        input: the model input's name (``edgekit.convert.model_inputs``).
        layers: each layer in order: ``{"layer", "class", "scale", "offset"}`` (what it computes
            as ``x * scale + offset``; Normalization's mean and variance as well).
        scale, offset: the composed map, ``x * scale + offset``; one value, or one per channel
            (the last axis), as numpy arrays.
    """

    input: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    scale: np.ndarray = field(default_factory=lambda: np.ones(1, np.float64))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float64))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """What the model computes from ``x`` before its first other layer."""
        return np.asarray(x, np.float64) * self.scale + self.offset

    def expected_range(self, candidates: dict[str, tuple[float, float]] | None = None) -> tuple[str, float]:
        """Which of ``candidates`` ({name: (low, high)}, default ``PIXEL_RANGES``) the layers
        expect: the one they map nearest to unit scale (a width near 2, centred near 0: [0, 1]
        or [-1, 1] for a Rescaling, a standardized spread for a Normalization). Returns
        (name, score); a lower score fits better (0 is [-1, 1] exactly)."""
        scored = {name: range_score(self, low, high) for name, (low, high) in (candidates or PIXEL_RANGES).items()}
        best = min(scored, key=scored.get)
        return best, scored[best]

    def describe(self) -> str:
        """One line: ``rescaling (Rescaling: x * 0.00392157 + 0)``."""
        return ", ".join(f"{layer['layer']} ({layer['class']}: x * {_short(layer['scale'])} + {_short(layer['offset'])})"
                         for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "layers": self.layers, "scale": _plain(self.scale), "offset": _plain(self.offset),
                "formula": "x * scale + offset (per channel, the last axis, where scale and offset are lists)"}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> InputPreprocessing:
        return cls(record["input"], list(record.get("layers") or []), np.asarray(record["scale"], np.float64),
                   np.asarray(record["offset"], np.float64))


def range_score(found: InputPreprocessing, low: float, high: float) -> float:
    """How far [low, high] after the layers is from unit scale: |log(width / 2)| + |centre|,
    averaged over the channels (0: exactly [-1, 1]; [0, 1] scores 0.69 + 0.5)."""
    a, b = found.apply(np.float64(low)), found.apply(np.float64(high))
    width = np.maximum(np.abs(b - a), 1e-30)
    centre = (a + b) / 2
    return float(np.mean(np.abs(np.log(width / 2.0)) + np.abs(centre)))


def detect(model) -> list[InputPreprocessing]:
    """The inputs of a Keras model (tf_keras or Keras 3) that start with affine layers, in the
    model's input order; an input whose first layer (looking through augmentation, resizing and
    nested models made of such layers) is anything else is left out."""
    from edgekit.convert import input_names

    try:
        tensors = list(zip(input_names(model), model.inputs))
    except (AttributeError, ValueError, TypeError):  # a model without a graph of inputs (subclassed, unbuilt)
        return []
    found = []
    for name, tensor in tensors:
        composed = _compose(name, _affine_chain(model, tensor))
        if composed.layers:
            found.append(composed)
    return found


def _affine_chain(model, tensor, depth: int = 0) -> list:
    """The affine layers met from ``tensor`` onwards in ``model``, until the first layer that is
    neither affine nor range-keeping, or a fork (the input feeds several layers)."""
    chain: list = []
    current = tensor
    for _ in range(len(getattr(model, "layers", [])) + 1):
        consumers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"
                     and any(t is current for t in _node_inputs(layer))]
        if len(consumers) != 1:
            return chain
        layer = consumers[0]
        kind = type(layer).__name__
        if kind in AFFINE_LAYERS:
            chain.append(layer)
        elif hasattr(layer, "layers") and hasattr(layer, "inputs") and depth < 4:  # a nested model
            inner = getattr(layer, "inputs", None) or []
            inside = _affine_chain(layer, inner[0], depth + 1) if len(inner) == 1 else []
            chain += inside
            if not _all_affine_or_kept(layer):
                return chain
        elif kind not in RANGE_KEEPING_LAYERS:
            return chain
        outputs = _node_outputs(layer)
        if len(outputs) != 1:
            return chain
        current = outputs[0]
    return chain


def _all_affine_or_kept(model) -> bool:
    return all(type(layer).__name__ in AFFINE_LAYERS + RANGE_KEEPING_LAYERS for layer in model.layers)


def _node(layer):
    """The layer's call in the model being walked: its last inbound node (a nested model's
    first node may be its own graph's; tf_keras keeps that one first)."""
    nodes = getattr(layer, "_inbound_nodes", None) or []
    return nodes[-1] if nodes else None


def _flat(tensors) -> list:
    if tensors is None:
        return []
    if isinstance(tensors, (list, tuple)):
        return list(tensors)
    if isinstance(tensors, dict):
        return list(tensors.values())
    return [tensors]


def _node_inputs(layer) -> list:
    node = _node(layer)
    if node is None:
        return []
    keras_inputs = getattr(node, "keras_inputs", None)  # tf_keras: always a list
    return list(keras_inputs) if keras_inputs is not None else _flat(getattr(node, "input_tensors", None))


def _node_outputs(layer) -> list:
    node = _node(layer)
    return _flat(getattr(node, "output_tensors", None)) if node is not None else []


def _compose(name: str, layers: list) -> InputPreprocessing:
    """Compose the layers' maps: (x * s1 + o1) * s2 + o2 = x * (s1 s2) + (o1 s2 + o2)."""
    scale, offset = np.ones(1, np.float64), np.zeros(1, np.float64)
    records = []
    for layer in layers:
        try:
            s, o, record = layer_map(layer)
        except (TypeError, ValueError, AttributeError):  # a Normalization never adapted: no statistics to read
            break
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(o))):
            break
        scale, offset = _channels(scale * s), _channels(offset * s + o)
        records.append(record)
    return InputPreprocessing(name, records, scale, offset)


def layer_map(layer) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(scale, offset, record) of one affine layer (``AFFINE_LAYERS``): what it computes as
    ``x * scale + offset``, one value or one per channel (``edgekit.convert.fold_input`` folds it).

    Raises:
        TypeError, ValueError, AttributeError: a layer without readable statistics (a
            Normalization never adapted).
    """
    kind = type(layer).__name__
    if kind == "Rescaling":
        s = _channels(np.asarray(_value(layer.scale), np.float64))
        o = _channels(np.asarray(_value(layer.offset), np.float64))
        return s, o, {"layer": layer.name, "class": kind, "scale": _plain(s), "offset": _plain(o)}
    mean = _channels(np.asarray(_value(layer.mean), np.float64))
    variance = _channels(np.asarray(_value(layer.variance), np.float64))
    # Both Kerases: (x - mean) / max(sqrt(variance), epsilon); invert=True undoes that
    std = np.maximum(np.sqrt(variance), 1e-7)
    record = {"layer": layer.name, "class": kind, "mean": _plain(mean), "variance": _plain(variance)}
    if getattr(layer, "invert", False):
        s, o = std, mean
        record["invert"] = True
    else:
        s, o = 1.0 / std, -mean / std
    return s, o, {**record, "scale": _plain(s), "offset": _plain(o)}


def _value(value):
    """A layer attribute as numbers: a variable or tensor read out, a list as it is."""
    if hasattr(value, "numpy"):
        return value.numpy()
    try:
        import keras

        return keras.ops.convert_to_numpy(value) if not isinstance(value, (int, float, list, tuple)) else value
    except Exception:  # noqa: BLE001 - plain numbers, or a tf_keras value numpy reads
        return np.asarray(value)


def _channels(values: np.ndarray) -> np.ndarray:
    """Per-channel values (the last axis; broadcast axes of length 1 dropped), or one value."""
    values = np.asarray(values, np.float64)
    if values.size <= 1:
        return values.reshape(1)
    squeezed = values.reshape(-1) if values.ndim <= 1 else values.reshape(values.shape[-1]) \
        if values.size == values.shape[-1] else values
    if squeezed.ndim == 1 and np.all(squeezed == squeezed[0]):
        return squeezed[:1]
    return squeezed


def _plain(values: np.ndarray):
    values = np.asarray(values, np.float64)
    return float(values.reshape(-1)[0]) if values.size == 1 else values.tolist()


def _short(value) -> str:
    if isinstance(value, list):
        flat = np.asarray(value, np.float64).reshape(-1)
        shown = ", ".join(f"{v:.6g}" for v in flat[:4])
        return f"[{shown}{', ...' if flat.size > 4 else ''}]"
    return f"{value:.6g}"
