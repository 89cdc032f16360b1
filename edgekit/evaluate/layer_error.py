"""Per-layer quantization error of an int8 artifact, named by Keras layer.

Each Keras layer's float output (the model the artifact was converted from, run over the same
samples) is compared with the same tensor inside the artifact, run in its own runtime and
dequantized. Each format's converter module reads its artifact's intermediate tensors
(``read_intermediates`` beside ``read_weights``; the Format row's ``intermediates``): TFLite
through the LiteRT interpreter with every tensor preserved, ONNX with every activation tensor a
graph output, OpenVINO with every node's output added to the model.

Which tensor is a layer's output is decided by value, not by name or shape
(``edgekit.evaluate.layer_match``): an fp32 artifact of the same model, made by the same
converter (the "twin"), is run on a few samples, each of its tensors that equals a Keras layer's
output within float tolerance (``fp32_snr_db``, at least ``layer_match.AGREE_DB``) is that
layer's, and it is found in the int8 artifact by name or graph position. A layer the converter
fused into the layers after it (Conv2D and BatchNormalization into the ReLU's op) has no tensor of
its own: the group is compared once, at its last layer's output, and named after all of them
(``conv2d+batch_normalization+re_lu``); a layer that cannot be placed is counted in
``unmatched``, never guessed. A softmax layer is compared at its logits: softmax multiplies the
relative error of uncertain predictions, which would blame the last layer for what the layers
before it lost.

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

from edgekit.evaluate.layer_match import LOGITS, aligned, consumers, is_input, is_model, match_layers, sources
from edgekit.evaluate.layer_match import snr_db as _snr_db

#: validation samples compared per row (the first ones: the split is shuffled)
SAMPLES = 128
#: the most bytes of Keras layer outputs compared at once (the artifact's tensors take about as
#: much again): a 224x224 MobileNetV2 (87 MB a sample) compares 3 samples, the zoo's models all 128
LAYER_BYTES = 256 << 20
#: SNRs are capped here (dB): a float32 tensor computed in another order differs by ~1e-7
SNR_CAP = 120.0

HOW = ("each Keras layer's output (the float model over {samples} validation samples) against the same tensor in the "
       "int8 artifact run in {runtime}, dequantized ({tool}); a layer's tensor is the one that equals its output in an "
       "fp32 artifact of the same converter (fp32_snr_db), layers fused into one op compared once as a group "
       "(a+b+c); snr_db = 10 log10(sum ref^2 / sum (ref - q)^2), "
       "nrmse = rms(ref - q) / (max ref - min ref), softmax layers at their logits; ranked by added_db, lowest "
       "first: the SNR of the noise that keeping the layer float would remove (the quantization of what it reads, "
       "its int8 weights and arithmetic: its result's noise-to-signal ratio minus its inputs', median sample)")


def layer_errors(fmt, model, artifact_path, samples, max_samples: int = SAMPLES, options: dict | None = None,
                 reference=None) -> dict[str, Any]:
    """The per-layer quantization error of one int8 artifact (``Variant.layer_error``).

    Args:
        fmt: the artifact's ``edgekit.formats.Format`` row (its ``intermediates`` reader, and
            its converter for the fp32 twin).
        model: the Keras model (tf_keras or Keras 3) the artifact was converted from: the
            normalization wrapper where normalization is embedded, the QAT model for QAT rows.
        artifact_path: the int8 artifact.
        samples: float32 inputs as the artifact takes them (validation samples); the first
            ``max_samples`` are used.
        options: the format's recipe options the artifact was converted with (the twin's).
        reference: an fp32 artifact of the same model by the same converter and options (the
            build's fp32 row) to use as the twin; None (or a file that cannot be read) converts
            one.

    Returns:
        ``{"metric": "snr_db", "how", "samples", "rank_by": "added_db", "layers_total",
        "layers_matched" (Keras layers compared, alone or in a group), "unmatched" (Keras layers
        with no tensor in the artifact), "input_snr_db" (the artifact's own input quantization),
        "fp32_artifact" (the twin's file, or "converted"), "seconds", "layers": [...]}``; each entry of ``layers``, worst first (``rank``):
        ``{"layer": Keras name, or a fused group's names joined by "+", "group" (the names),
        "path" (of its last layer, inside nested models), "snr_db", "nrmse", "added_db",
        "median_snr_db" (the median sample's SNR), "input_snr_db" (what the layer reads, before
        its quantization), "local_snr_db" (what it adds on its own: its Keras layers run on the
        artifact's own dequantized inputs against its output, as TFLite's QuantizationDebugger
        compares each op; None where an input is not compared), "quantize_snr_db" (its output's
        quantize step alone, float result against what the next layer reads; None where the
        artifact computes in int8 without a float result, TFLite), "compared_at" ("output", or
        "logits" for a softmax layer), "tensor" (the artifact's tensor), "fp32_tensor" and
        "fp32_snr_db" (the twin's tensor and how closely it equals the Keras output), "shape"}``.
        SNRs are within +-SNR_CAP: the record is strict JSON.

    Raises:
        ValueError: no samples, or a format without an intermediates reader; anything its
            converter or runtime raises (the evaluate stage records it as ``{"error": ...}``).
    """
    from edgekit.evaluate.layer_match import PROBE_SAMPLES

    started = time.perf_counter()
    samples = samples[:sample_count(model, samples, max_samples)]
    samples = np.asarray(samples, np.float32)
    if len(samples) == 0:
        raise ValueError("no samples to compare layers on")
    entries = fmt.load_intermediates_reader()(artifact_path, samples)
    leaves = keras_layers(model)
    refs = float_outputs(model, samples, leaves)
    read = sources(model, leaves)
    twin, twin_from = fp32_twin(fmt, model, samples[:PROBE_SAMPLES], options, reference)
    matches, _ = match_layers(leaves, refs, twin, entries, consumers(read))
    if not matches and twin_from != "converted":  # a stale fp32 artifact (another model): convert one
        twin, twin_from = fp32_twin(fmt, model, samples[:PROBE_SAMPLES], options)
        matches, _ = match_layers(leaves, refs, twin, entries, consumers(read))
    layers = _compare(leaves, refs, matches, entries, samples, read)
    # each converter module says how its reader runs the artifact and compares (its INTERMEDIATES_HOW)
    runtime, tool = getattr(importlib.import_module(fmt.converter_module), "INTERMEDIATES_HOW",
                            (f"the {fmt.name} runtime", "by hand"))
    compared = {name for entry in layers for name in entry["group"]}
    record = {
        "metric": "snr_db",
        "how": HOW.format(samples=len(samples), runtime=runtime, tool=tool),
        "samples": len(samples),
        "rank_by": "added_db",
        "layers_total": len(leaves),
        "layers_matched": sum(leaf["name"] in compared for leaf in leaves),
        "unmatched": [leaf["name"] for leaf in leaves if leaf["name"] not in compared],
        "input_snr_db": _round(_input_snr(entries, samples)),
        "fp32_artifact": twin_from,
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
    """Keras layer names of a ``layer_errors`` record, the layers that lose most first, a fused
    group's layers together. Empty for a record without layers (an error record)."""
    return [name for group in rank_groups(record) for name in group]


def rank_groups(record: dict[str, Any]) -> list[list[str]]:
    """The compared entries of a ``layer_errors`` record as lists of Keras layer names (one
    layer, or a fused group's layers), the entry that loses most first: the order the int8-mixed
    search keeps layers float in, a group at once (its layers are one op in the artifact)."""
    return [list(entry.get("group") or [entry["layer"]]) for entry in rank(record.get("layers") or [])]


def rank(layers: list[dict]) -> list[dict]:
    """Entries worst first: the lowest ``added_db``; among equals (no measurable noise of their
    own), the one reading the worst input first (a layer behind a ruined tensor cannot show what
    its own quantization adds, and its input quantization may be part of the ruin), then the
    lowest ``snr_db``."""
    return sorted(layers, key=lambda e: (e.get("added_db", SNR_CAP), e.get("input_snr_db", SNR_CAP),
                                         e.get("snr_db", SNR_CAP)))


# -- the Keras side ---------------------------------------------------------------------------

def keras_layers(model, prefix: tuple[str, ...] = ()) -> list[dict]:
    """The leaf layers of ``model`` in its order, nested models expanded in place:
    ``{"name", "path", "layer"}`` (``path``: the names of the models around it, then its own)."""
    out = []
    for layer in model.layers:
        if is_input(layer):
            continue
        if is_model(layer):
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
    layers = [layer for layer in model.layers if not is_input(layer)]
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
            tensors.append(_outbound_tensors(layer) if is_model(layer) else layer.output)
            owners.append(("out", layer))
        except Exception:  # noqa: BLE001, S112 - called more than once: no single output
            continue
        if is_model(layer) or _softmax(layer):
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
    if is_model(layer):
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

def fp32_twin(fmt, model, samples: np.ndarray, options: dict | None = None, reference=None) -> tuple[list[dict], str]:
    """The entries of an fp32 artifact of ``model`` made by ``fmt``'s own converter (its "twin":
    the same graph, names and fusions as the int8 artifact, without quantization) over
    ``samples``: what ``edgekit.evaluate.layer_match`` finds each Keras layer's tensor in; and
    where it came from (the file name, or "converted"). ``reference`` is such an artifact
    already made (the build's fp32 row); a stale one matches nothing (its tensors do not equal
    the model's outputs), never the wrong layer."""
    import tempfile
    from pathlib import Path

    reader = fmt.load_intermediates_reader()
    if reference is not None and Path(reference).is_file():
        try:
            return reader(Path(reference), samples), Path(reference).name
        except Exception:  # noqa: BLE001, S110 - unreadable: convert a twin instead
            pass
    with tempfile.TemporaryDirectory(prefix="edgekit-twin-") as tmp:
        path = Path(tmp) / f"twin{fmt.suffix}"
        try:
            fmt.load_converter()(model, path, "fp32", samples, dict(options or {}))
        except Exception as exc:  # noqa: BLE001 - said in one line, with what it was for
            from edgekit.errors import one_line

            raise ValueError(f"no fp32 {fmt.name} artifact to find the layers' tensors in: {one_line(exc)}") from exc
        return reader(path, samples), "converted"


def snr_db(ref: np.ndarray, q: np.ndarray) -> float:
    """10 log10(signal power / noise power), within +-SNR_CAP."""
    return _snr_db(ref, q, SNR_CAP)


def _aligned(value: np.ndarray, ref: np.ndarray) -> np.ndarray | None:
    """``value`` in the layout of ``ref`` (``layer_match.aligned``), else None."""
    return aligned(value, ref)[0]


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


def _local(match, leaves: list[dict], read: dict, outputs: dict[int, np.ndarray], source: np.ndarray | None) -> np.ndarray | None:
    """The Keras layers of a compared entry run on the artifact's own dequantized inputs (what
    TFLite's QuantizationDebugger compares each quantized op with): the tensors of the compared
    entries it reads (``outputs``, leaf -> array in the Keras layout) or the artifact's input;
    None where one of them is not compared on its own."""
    values: dict[int, np.ndarray] = {}
    last = match.members[-1]
    for i in match.members:
        args = []
        for parent in read.get(i) or []:
            value = source if parent is None else values.get(parent, outputs.get(parent))
            if value is None:
                return None
            args.append(value)
        if not args:
            return None
        layer = leaves[i]["layer"]
        activation = getattr(layer, "activation", None)
        try:
            if i == last and match.at == "logits":
                layer.activation = _linear(layer)
            out = layer(args if len(args) > 1 else args[0], training=False)
        except Exception:  # noqa: BLE001 - a layer that cannot be called alone: no local error
            return None
        finally:
            if i == last and match.at == "logits":
                layer.activation = activation
        if isinstance(out, (list, tuple)):
            return None
        values[i] = _numpy(out).astype(np.float32, copy=False)
    return values[last]


def _compare(leaves: list[dict], refs: dict[str, np.ndarray], matches: list, entries: list[dict],
             samples: np.ndarray, read: dict | None = None) -> list[dict]:
    by_name = {entry["name"]: entry for entry in entries}
    # Per compared entry: "post", its output after its quantize steps (what the next layer
    # reads, and what snr_db describes), and "pre", its float result before them (what keeping
    # the next layer float would hand on instead).
    post: dict[int, dict] = {}
    pre: dict[int, dict] = {}
    quantize_snr: dict[int, float] = {}
    owner: dict[str, int] = {}
    for k, match in enumerate(matches):
        path = leaves[match.members[-1]]["path"]
        ref = refs[path + LOGITS] if match.at == "logits" else refs[path]
        value = _aligned(match.post["value"], ref)
        before = _aligned(match.pre["value"], ref)
        if value is None or before is None:
            continue
        post[k] = {"value": value, "ref": ref}
        if match.at == "output" and np.min(ref) >= 0 and np.min(before) < 0 and match.pre is not match.post:
            # onnxruntime folds a Relu into the QuantizeLinear after it (zero point 0 clamps at
            # 0): the float tensor before it is the layer's output clipped at 0
            before = np.maximum(before, 0)
        pre[k] = {"value": before, "ref": ref}
        if match.pre is not match.post:
            # the output's quantize step alone (onnxruntime's qdq_err): a range that clips shows here
            quantize_snr[k] = snr_db(before, value)
        if snr_db(ref, before) < snr_db(ref, value):
            # a reference closer to the quantized tensor than to the float one before it already
            # holds that quantization (a QAT model's fake-quant output): the quantized one it is
            pre[k] = post[k]
        for name in match.entries | {match.pre["name"], match.post["name"]}:
            owner[name] = k
    nsr_pre = {k: _nsr(c["ref"], c["value"]) for k, c in pre.items()}
    snr_pre = {k: snr_db(c["ref"], c["value"]) for k, c in pre.items()}
    source = next((e for e in entries if e["graph_input"]), None)
    input_nsr = np.zeros(len(samples))
    if source is not None and source["value"] is not None and source["value"].size == samples.size:
        input_nsr = _nsr(samples.reshape(source["value"].shape), source["value"])
    input_snr = _input_snr(entries, samples)

    def upstream(k: int) -> tuple[float, np.ndarray]:
        """(SNR, per-sample NSR) before quantization of the worst compared output that entry
        k's float result reads (or of the input), found by walking the artifact's graph back to
        the first tensors of other compared entries."""
        found, seen = [], set()
        stack = list(matches[k].pre["inputs"])
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            entry = by_name.get(name)
            if entry is None:
                continue
            j = owner.get(name)
            if j is not None and j != k and j in pre:
                found.append((snr_pre[j], nsr_pre[j]))
            elif entry["graph_input"]:
                found.append((input_snr, input_nsr))
            else:
                stack.extend(entry["inputs"])
        return min(found, key=lambda f: f[0]) if found else (input_snr, input_nsr)

    # Each compared entry's output as the layers after it read it, in the Keras layout: the
    # inputs of the local comparison (a softmax layer compared at its logits hands on nothing).
    outputs = {matches[k].members[-1]: c["value"] for k, c in post.items() if matches[k].at == "output"}
    model_input = None
    if source is not None and source["value"] is not None and source["value"].size == samples.size:
        model_input = source["value"].reshape(samples.shape)

    layers = []
    for k in sorted(post):
        match, c = matches[k], post[k]
        local = _local(match, leaves, read or {}, outputs, model_input)
        before, before_nsr = upstream(k)
        # What keeping this layer float removes: the quantization of what it reads, its int8
        # weights and arithmetic (not its output's quantization, which its readers decide), per
        # sample; the median sample's, so that a rare outlier a range clips outweighs nothing.
        added = float(np.median(np.maximum(nsr_pre[k] - before_nsr, 0.0)))
        last = leaves[match.members[-1]]
        group = [leaves[i]["name"] for i in match.members]
        layers.append({
            "layer": "+".join(group),
            "group": group,
            "path": last["path"],
            "snr_db": _round(snr_db(c["ref"], c["value"])),
            "nrmse": _round(nrmse(c["ref"], c["value"]), 6),
            "added_db": _round(_db(added)),
            "median_snr_db": _round(_db(float(np.median(_nsr(c["ref"], c["value"]))))),
            "input_snr_db": _round(before),
            "local_snr_db": _round(snr_db(local, c["value"])) if local is not None and local.shape == c["value"].shape else None,
            "quantize_snr_db": _round(quantize_snr[k]) if k in quantize_snr else None,
            "compared_at": match.at,
            "tensor": match.post["name"][:1000],
            "fp32_tensor": match.twin[:1000],
            "fp32_snr_db": _round(min(match.fp32_snr_db, SNR_CAP)),
            "shape": list(c["ref"].shape[1:]),
        })
    return layers


def _round(value: float, digits: int = 2) -> float:
    return round(float(value), digits) if math.isfinite(value) else value
