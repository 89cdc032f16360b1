"""Per-layer quantization error of an int8 artifact, named by Keras layer.

Each Keras layer's float output (the model the artifact was converted from, run over the same
samples) is compared with the same tensor inside the artifact, run in its own runtime and
dequantized. Each format's converter module reads its artifact's intermediate tensors
(``read_intermediates`` beside ``read_weights``; the Format row's ``intermediates``): TFLite
through the LiteRT interpreter with every tensor preserved, ONNX with every activation tensor a
graph output, OpenVINO with every node's output added to the model. Their names carry the Keras
layer paths (``lenet/conv2d/Relu``), which is how tensors map back to layers: a tensor belongs to
the last Keras layer (in the model's order) that its name mentions as a scope, op names left out
(Keras 3 traces ``dense`` as ``dense_1``: the suffix that finds most layers is used); a quantize
step (QuantizeLinear/DequantizeLinear, QUANTIZE, FakeQuantize) that mentions none belongs to the
layer of the tensor it quantizes, the graph's result to the model's last layer, any other op the
converter named itself (tf2onnx's ``Gemm__364``) to no layer. A layer's tensor is the last of its tensors whose shape is the Keras
output's (NCHW and NHWC both tried); a layer without one (fused into another layer's op, renamed
by the converter's own passes, kept out of the graph) is left out and counted, never guessed. A
softmax layer is compared at its logits: softmax multiplies the relative error of uncertain
predictions, which would blame the last layer for what the layers before it lost.

``snr_db`` describes the layer's output as the next layer reads it (after its quantize step).
Error accumulates through the network, so that SNR always blames the last layers; the ranking is
by what keeping the layer float (``quantize.keep_float``) would remove: the quantization of the
tensors it reads (a tensor's int8 range is its reader's input quantization in onnxruntime and
NNCF, a QUANTIZE op before it in TFLite) and its own int8 weights and arithmetic. That is the
noise-to-signal power ratio of its float result (before its own output's quantize step) minus
that of its inputs before theirs, per sample, the median sample's written as an SNR
(``added_db``, lower is worse; the median, so that a rare outlier a range clips outweighs
nothing): a layer that turns a 60 dB input into a 20 dB result adds noise at 20 dB; a layer that
keeps 20 dB adds next to none. On recipes/sensors_qat.yaml the TFLite row ranks dense_1 first
(the reader of the first hidden layer's glitch-blown range) and keeping it float recovers the
whole loss; onnxruntime ranks dense_1 and dense first, and needs both.
"""

from __future__ import annotations

import importlib
import math
import time
from typing import Any

import numpy as np

#: validation samples compared per row (the first ones: the split is shuffled)
SAMPLES = 128
#: the most bytes of Keras layer outputs compared at once (the artifact's tensors take about as
#: much again): a 224x224 MobileNetV2 (87 MB a sample) compares 3 samples, the zoo's models all 128
LAYER_BYTES = 256 << 20
#: SNRs are capped here (dB): a float32 tensor computed in another order differs by ~1e-7
SNR_CAP = 120.0

HOW = ("each Keras layer's output (the float model over {samples} validation samples) against the same tensor in the "
       "int8 artifact run in {runtime}, dequantized ({tool}); snr_db = 10 log10(sum ref^2 / sum (ref - q)^2), "
       "nrmse = rms(ref - q) / (max ref - min ref), softmax layers at their logits; ranked by added_db, lowest "
       "first: the SNR of the noise that keeping the layer float would remove (the quantization of what it reads, "
       "its int8 weights and arithmetic: its result's noise-to-signal ratio minus its inputs', median sample)")



def layer_errors(fmt, model, artifact_path, samples, max_samples: int = SAMPLES) -> dict[str, Any]:
    """The per-layer quantization error of one int8 artifact (``Variant.layer_error``).

    Args:
        fmt: the artifact's ``edgekit.formats.Format`` row (its ``intermediates`` reader).
        model: the Keras model (tf_keras or Keras 3) the artifact was converted from: the
            normalization wrapper where normalization is embedded, the QAT model for QAT rows.
        artifact_path: the int8 artifact.
        samples: float32 inputs as the artifact takes them (validation samples); the first
            ``max_samples`` are used.

    Returns:
        ``{"metric": "snr_db", "how", "samples", "rank_by": "added_db", "layers_total",
        "layers_matched", "unmatched" (Keras layers with no tensor of their own in the artifact),
        "input_snr_db" (the artifact's own input quantization), "seconds", "layers": [...]}``;
        each entry of ``layers``, worst first (``rank``): ``{"layer": Keras name, "path" (inside
        nested models), "snr_db", "nrmse", "added_db", "median_snr_db" (the median sample's SNR),
        "input_snr_db" (what the layer reads, before its quantization), "compared_at" ("output",
        or "logits" for a softmax layer), "tensor" (the artifact's tensor), "shape"}``. SNRs are
        within +-SNR_CAP: the record is strict JSON.

    Raises:
        ValueError: no samples, or a format without an intermediates reader; anything its
            runtime raises (the evaluate stage records it as ``{"error": ...}``).
    """
    started = time.perf_counter()
    samples = samples[:sample_count(model, samples, max_samples)]
    samples = np.asarray(samples, np.float32)
    if len(samples) == 0:
        raise ValueError("no samples to compare layers on")
    entries = fmt.load_intermediates_reader()(artifact_path, samples)
    leaves = keras_layers(model)
    refs = float_outputs(model, samples, leaves)
    layers = _compare(leaves, refs, entries, samples)
    matched = {entry["layer"] for entry in layers}
    # each converter module says how its reader runs the artifact and compares (its INTERMEDIATES_HOW)
    runtime, tool = getattr(importlib.import_module(fmt.converter_module), "INTERMEDIATES_HOW",
                            (f"the {fmt.name} runtime", "by hand"))
    record = {
        "metric": "snr_db",
        "how": HOW.format(samples=len(samples), runtime=runtime, tool=tool),
        "samples": len(samples),
        "rank_by": "added_db",
        "layers_total": len(leaves),
        "layers_matched": len(layers),
        "unmatched": [leaf["name"] for leaf in leaves if leaf["name"] not in matched],
        "input_snr_db": _round(_input_snr(entries, samples)),
        "layers": rank(layers),
    }
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def sample_count(model, samples, max_samples: int = SAMPLES, budget: int = LAYER_BYTES) -> int:
    """How many of ``samples`` one per-layer error compares: fewer of large inputs, and no more
    than fit ``budget`` bytes of the model's layer outputs (``edgekit.convert.activation_bytes``):
    every activation of every compared sample is held at once, in Keras and in the artifact."""
    from edgekit.convert import activation_bytes

    size = max(1, math.prod(np.shape(samples)[1:]))
    return max(1, min(max_samples, max(16, 400_000 // size), budget // activation_bytes(model)))


def rank_layers(record: dict[str, Any]) -> list[str]:
    """Keras layer names of a ``layer_errors`` record, the layer that loses most first (the
    order the int8-mixed search keeps layers float in). Empty for a record without layers
    (an error record)."""
    return [entry["layer"] for entry in rank(record.get("layers") or [])]


def rank(layers: list[dict]) -> list[dict]:
    """Entries worst first: the lowest ``added_db``; among equals (no measurable noise of their
    own), the one reading the worst input first (a layer behind a ruined tensor cannot show what
    its own quantization adds, and its input quantization may be part of the ruin), then the
    lowest ``snr_db``."""
    return sorted(layers, key=lambda e: (e.get("added_db", SNR_CAP), e.get("input_snr_db", SNR_CAP),
                                         e.get("snr_db", SNR_CAP)))


# -- the Keras side ---------------------------------------------------------------------------

def _is_model(layer) -> bool:
    return any(c.__name__ in ("Functional", "Sequential", "Model") for c in type(layer).__mro__) and hasattr(layer, "layers")


def _is_input(layer) -> bool:
    return type(layer).__name__ == "InputLayer"


def keras_layers(model, prefix: tuple[str, ...] = ()) -> list[dict]:
    """The leaf layers of ``model`` in its order, nested models expanded in place:
    ``{"name", "path", "layer"}`` (``path``: the names of the models around it, then its own)."""
    out = []
    for layer in model.layers:
        if _is_input(layer):
            continue
        if _is_model(layer):
            out += keras_layers(layer, (*prefix, layer.name))
        else:
            out.append({"name": layer.name, "path": "/".join((*prefix, layer.name)), "layer": layer})
    return out


def _numpy(value) -> np.ndarray:
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    try:
        import keras

        return np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:  # noqa: BLE001 - already an array, or tf_keras without Keras 3
        return np.asarray(value)


def float_outputs(model, x: np.ndarray, leaves: list[dict] | None = None) -> dict[str, np.ndarray]:
    """Each leaf layer's float output over ``x`` (path -> array), from one multi-output model
    per (nested) functional model, or layer by layer for a Sequential one. A layer whose output
    cannot be read (a shared layer called twice) is left out."""
    out: dict[str, np.ndarray] = {}
    _collect(model, x, (), out)
    return out


def _collect(model, x, prefix: tuple[str, ...], out: dict) -> None:
    layers = [layer for layer in model.layers if not _is_input(layer)]
    if type(model).__name__ == "Sequential" or not getattr(model, "inputs", None):
        value = x
        for layer in layers:
            inbound = value
            value = layer(value, training=False)
            _store(layer, inbound, value, prefix, out)
        return
    tensors, owners = [], []
    for layer in layers:
        try:
            tensors.append(_outbound_tensors(layer) if _is_model(layer) else layer.output)
            owners.append(("out", layer))
        except Exception:  # noqa: BLE001, S112 - called more than once: no single output
            continue
        if _is_model(layer) or _softmax(layer):
            inbound = _inbound_tensors(layer)
            if inbound is not None:
                tensors.append(inbound)
                owners.append(("in", layer))
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # the structure it is called with
    probe = _functional_class(model)(inputs, tensors)
    values = probe(x, training=False)
    values = values if isinstance(values, (list, tuple)) else [values]
    inbound_of = {id(layer): value for (role, layer), value in zip(owners, values) if role == "in"}
    for (role, layer), value in zip(owners, values):
        if role == "out":
            _store(layer, inbound_of.get(id(layer)), value, prefix, out)


def _store(layer, inbound, value, prefix, out) -> None:
    if _is_model(layer):
        if inbound is not None:
            _collect(layer, inbound, (*prefix, layer.name), out)
        return
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            return
        value = value[0]
    path = "/".join((*prefix, layer.name))
    out[path] = _numpy(value).astype(np.float32, copy=False)
    if inbound is not None and _softmax(layer):
        # The logits too: softmax multiplies the relative error of uncertain predictions, so its
        # output would blame the last layer for what the layers before it lost.
        activation = layer.activation
        try:
            layer.activation = _linear(layer)
            out[path + LOGITS] = _numpy(layer(inbound, training=False)).astype(np.float32, copy=False)
        except Exception:  # noqa: BLE001, S110 - no logits for this layer: its output is compared
            pass
        finally:
            layer.activation = activation


#: the key suffix of a softmax layer's logits among the float outputs
LOGITS = "#logits"


def _softmax(layer) -> bool:
    """A layer computing x -> softmax(f(x)) through its ``activation`` (Dense, Conv)."""
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", "") == "softmax" and hasattr(layer, "kernel")


def _linear(layer):
    import sys

    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None and isinstance(layer, tf_keras.layers.Layer):
        return tf_keras.activations.linear
    import keras

    return keras.activations.linear


def _functional_class(model):
    """``keras.Model`` of the Keras that made ``model``."""
    import sys

    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None and isinstance(model, tf_keras.Model):
        return tf_keras.Model
    import keras

    return keras.Model


def _outbound_tensors(layer):
    """What a nested model returned in its (last) call inside the outer model (its ``output``
    is its own graph's)."""
    tensors = layer._inbound_nodes[-1].output_tensors
    if isinstance(tensors, (list, tuple)) and len(tensors) == 1:
        return tensors[0]
    return tensors


def _inbound_tensors(layer):
    """The tensor(s) a nested model received in its (last) call inside the outer model."""
    try:
        node = layer._inbound_nodes[-1]
        tensors = node.input_tensors
    except (AttributeError, IndexError):
        return None
    if isinstance(tensors, (list, tuple)):
        return tensors[0] if len(tensors) == 1 else list(tensors)
    return tensors


# -- the artifact side ------------------------------------------------------------------------

def _segments(name: str) -> set[str]:
    """The scopes of a tensor name, the op name of each path left out:
    ``a/b/Relu;a/c/BiasAdd`` -> {a, b, c} (an op named ``add_1`` is not the layer ``add_1``)."""
    parts = set()
    for piece in name.split(";"):
        parts.update(segment.split(":")[0] for segment in piece.split("/")[:-1])
    return parts


def segment_index(leaves: list[dict], entries: list[dict]) -> dict[str, int]:
    """Path segment of the artifact's tensor names -> index of the Keras leaf layer it names.

    tf_keras traces a layer under its own name; Keras 3 under a uniquified one (``dense_1``
    for ``dense`` when the graph already had that scope): the suffix that finds the most layers
    among the segments is used for every layer (exact names where it finds none), so that a
    Keras 3 ``dense`` traced as ``dense_1`` is never taken for the layer ``dense_1``."""
    present = set().union(*(_segments(entry["name"]) for entry in entries)) if entries else set()
    names = [leaf["name"] for leaf in leaves]

    def found(suffix: str) -> int:
        return sum(f"{name}{suffix}" in present for name in names)

    suffix = max(["", "_1", "_2", "_3"], key=lambda s: (found(s), s == ""))
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        key = f"{name}{suffix}"
        index.setdefault(key, i)
    for i, name in enumerate(names):  # a layer its suffixed name did not find: its exact name
        if f"{name}{suffix}" not in present and name in present:
            index.setdefault(name, i)
    return index


def _attribute(leaves: list[dict], entries: list[dict], index: dict[str, int]) -> dict[str, int | None]:
    """Entry name -> index of its Keras leaf layer (None: the input, or no layer)."""
    owner: dict[str, int | None] = {}
    read = {name for entry in entries for name in entry["inputs"]}
    for entry in entries:
        if entry["graph_input"]:
            owner[entry["name"]] = None
            continue
        mentioned = [index[s] for s in _segments(entry["name"]) if s in index]
        if mentioned:
            owner[entry["name"]] = max(mentioned)
        elif entry["name"] not in read and leaves and not entry.get("quantize"):
            # the graph's result, named after the signature (TFLite's StatefulPartitionedCall:0):
            # the model's last layer computed it
            owner[entry["name"]] = len(leaves) - 1
        elif entry.get("quantize"):  # a quantize step of a tensor is that tensor's layer's
            parents = [owner.get(name) for name in entry["inputs"]]
            owner[entry["name"]] = next((p for p in parents if p is not None), None)
        else:  # an op the converter named itself (tf2onnx's Gemm__364) belongs to no layer
            owner[entry["name"]] = None
    return owner


def _owners(entry: dict, owner: dict) -> list:
    """The layers of the tensors an entry reads."""
    return [owner.get(name) for name in entry["inputs"]]


def _aligned(value: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """``value`` in the layout of ``ref`` (as it is, or channels moved last: ONNX and OpenVINO
    keep NCHW inside), else None; where both fit (as many channels as rows), the closer one."""
    fits = [value] if value.shape == ref.shape else []
    if value.ndim == ref.ndim and value.ndim >= 3:
        moved = np.moveaxis(value, 1, -1)
        if moved.shape == ref.shape:
            fits.append(moved)
    if len(fits) > 1:
        return max(fits, key=lambda v: snr_db(ref, v))
    return fits[0] if fits else None


def snr_db(ref: np.ndarray, q: np.ndarray) -> float:
    """10 log10(signal power / noise power), capped at SNR_CAP."""
    signal = float(np.sum(np.square(ref, dtype=np.float64)))
    noise = float(np.sum(np.square(ref.astype(np.float64) - q.astype(np.float64))))
    if noise <= signal * 10 ** (-SNR_CAP / 10):
        return SNR_CAP
    if signal == 0.0:
        return -SNR_CAP
    return max(-SNR_CAP, 10 * math.log10(signal / noise))


def nrmse(ref: np.ndarray, q: np.ndarray) -> float:
    """RMS of the error over the reference's range (max - min); the plain RMS where the
    reference is constant."""
    rmse = float(np.sqrt(np.mean(np.square(ref.astype(np.float64) - q.astype(np.float64)))))
    spread = float(np.max(ref) - np.min(ref)) if ref.size else 0.0
    return rmse / spread if spread > 0 else rmse


def _input_snr(entries: list[dict], samples: np.ndarray) -> float:
    source = next((e for e in entries if e["graph_input"]), None)
    if source is None or source["value"] is None or source["value"].size != samples.size:
        return SNR_CAP
    return snr_db(samples.reshape(source["value"].shape), source["value"])


def _nsr(ref: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Noise-to-signal power ratio of each sample (axis 0)."""
    ref64 = ref.reshape(len(ref), -1).astype(np.float64)
    noise = np.sum(np.square(ref64 - q.reshape(len(q), -1).astype(np.float64)), axis=1)
    signal = np.sum(np.square(ref64), axis=1)
    return np.where(signal > 0, noise / np.maximum(signal, 1e-300), np.where(noise > 0, 1.0, 0.0))


def _db(ratio: float) -> float:
    """A noise-to-signal ratio as an SNR in dB, within +-SNR_CAP."""
    if ratio <= 10 ** (-SNR_CAP / 10):
        return SNR_CAP
    return float(min(SNR_CAP, max(-SNR_CAP, -10 * math.log10(ratio))))


def _compare(leaves: list[dict], refs: dict[str, np.ndarray], entries: list[dict], samples: np.ndarray) -> list[dict]:
    index = segment_index(leaves, entries)
    owner = _attribute(leaves, entries, index)
    by_name = {entry["name"]: entry for entry in entries}
    # Per layer: "post", its last tensor (after its output's quantize steps: what the next layer
    # reads, and what snr_db describes), and "pre", its last tensor before them (what keeping the
    # next layer float would hand on instead).
    post: dict[int, dict] = {}
    pre: dict[int, dict] = {}
    past_softmax: set[int] = set()
    for entry in entries:
        i = owner.get(entry["name"])
        if i is None:
            continue
        path = leaves[i]["path"]
        logits = refs.get(path + LOGITS)
        if logits is not None:
            # A softmax layer is compared at its logits: the last tensor named after the layer
            # itself (not one that inherited it, such as TFLite's unnamed SOFTMAX) before its
            # softmax op.
            if "softmax" in entry["name"].lower() or any(p in past_softmax for p in _owners(entry, owner)):
                past_softmax.add(i)
            named = any(index.get(segment) == i for segment in _segments(entry["name"]))
            if i in past_softmax or not named:
                continue
            ref, at = logits, "logits"
        else:
            ref, at = refs.get(path), "output"
        if ref is None or entry["value"] is None:
            continue
        value = _aligned(entry["value"], ref)
        if value is None:
            continue
        found = {"entry": entry, "value": value, "ref": ref, "at": at}
        post[i] = found
        if not entry.get("quantize"):
            if at == "output" and np.min(ref) >= 0 and np.min(value) < 0:
                # onnxruntime folds a Relu into the QuantizeLinear after it (zero point 0 clamps
                # at 0): the float tensor before it is the layer's output clipped at 0
                found = {**found, "value": np.maximum(value, 0)}
            pre[i] = found
    snr = {i: snr_db(c["ref"], c["value"]) for i, c in post.items()}
    for i, quantized in post.items():
        # A reference closer to the quantized tensor than to the float one before it already
        # holds that quantization (a QAT model's fake-quant output): the quantized one it is.
        if i not in pre or snr_db(pre[i]["ref"], pre[i]["value"]) < snr[i]:
            pre[i] = quantized
    nsr_pre = {i: _nsr(c["ref"], c["value"]) for i, c in pre.items()}
    snr_pre = {i: snr_db(c["ref"], c["value"]) for i, c in pre.items()}
    source = next((e for e in entries if e["graph_input"]), None)
    input_nsr = np.zeros(len(samples))
    if source is not None and source["value"] is not None and source["value"].size == samples.size:
        input_nsr = _nsr(samples.reshape(source["value"].shape), source["value"])
    input_snr = _input_snr(entries, samples)

    def upstream(i: int) -> tuple[float, np.ndarray]:
        """(SNR, per-sample NSR) before quantization of the worst layer output that layer i's
        "pre" tensor reads (or of the input), found by walking the artifact's graph back to the
        first tensors of other compared layers."""
        found, seen = [], set()
        stack = list(pre[i]["entry"]["inputs"])
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            entry = by_name.get(name)
            if entry is None:
                continue
            j = owner.get(name)
            if j is not None and j != i and j in pre:
                found.append((snr_pre[j], nsr_pre[j]))
            elif entry["graph_input"]:
                found.append((input_snr, input_nsr))
            else:
                stack.extend(entry["inputs"])
        return min(found, key=lambda f: f[0]) if found else (input_snr, input_nsr)

    layers = []
    for i in sorted(post):
        c = post[i]
        before, before_nsr = upstream(i)
        # What keeping this layer float removes: the quantization of what it reads, its int8
        # weights and arithmetic (not its output's quantization, which its readers decide), per
        # sample; the median sample's, so that a rare outlier a range clips outweighs nothing.
        added = float(np.median(np.maximum(nsr_pre[i] - before_nsr, 0.0)))
        layers.append({
            "layer": leaves[i]["name"],
            "path": leaves[i]["path"],
            "snr_db": _round(snr[i]),
            "nrmse": _round(nrmse(c["ref"], c["value"]), 6),
            "added_db": _round(_db(added)),
            "median_snr_db": _round(_db(float(np.median(_nsr(c["ref"], c["value"]))))),
            "input_snr_db": _round(before),
            "compared_at": c["at"],
            "tensor": c["entry"]["name"][:200],
            "shape": list(c["ref"].shape[1:]),
        })
    return layers


def _round(value: float, digits: int = 2) -> float:
    return round(float(value), digits) if math.isfinite(value) else value
