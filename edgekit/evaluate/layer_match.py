"""Which tensor of an int8 artifact is each Keras layer's output (for ``edgekit.evaluate.layer_error``).

Names and shapes do not say it: converters fuse layers (Conv2D + BatchNormalization + ReLU become
one op whose tensor carries the ReLU's name), split them (TFLite's SeparableConv2D is a
DEPTHWISE_CONV_2D whose tensor has the layer's shape, then the CONV_2D that is its output), stop
half-way (tf2onnx's BatchNormalization as a mul then an add) and name tensors after the first, the
last or none of the TensorFlow ops they hold (OpenVINO's ``Transpose_877`` is a Relu). So a layer's
tensor is found by its value, in an fp32 artifact of the same model converted the same way (its
"twin"), and carried over to the int8 artifact by graph identity:

1. A twin tensor is a Keras layer's output when it equals it, in the artifact's layout (NHWC, NCHW,
   or the same values reshaped), within ``AGREE_DB`` of SNR on the first ``PROBE_SAMPLES``
   samples (see ``AGREE_DB`` for what agrees how well). A tensor equal to several layers'
   outputs (a Dropout, an activation that changes nothing on these samples) is the last one's,
   and a same-shape equality wins over a reshaped one.
2. Each twin tensor is found in the int8 artifact by its name where that is unique in both (the
   converters keep TensorFlow's names; tf2onnx's numbered ones compared without the number,
   OpenVINO's generated ``Type_123`` ones never), else by position: the one op of the same type
   and shape that reads the counterparts of its inputs, quantize steps skipped.
3. A layer with no tensor of its own in the int8 artifact is fused into the layer(s) reading it: it
   joins the first of them (through other such layers) that has one, and that group is compared
   once, at its last layer's output, named ``conv2d+batch_normalization+re_lu``. A layer whose
   output cannot be read (a shared layer called twice) or that reaches no compared layer is
   unmatched, never guessed.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

#: a twin tensor is a layer's output at this SNR (dB) or better against the Keras output. Measured:
#: float32 arithmetic in another order agrees to 112-120 dB (LiteRT, onnxruntime, OpenVINO on
#: MobileNetV2 0.35), OpenVINO's f32 matrix products on a PReLU net to 57-59; the tensors beside a
#: layer's output less, from under 0 dB (the depthwise half of a separable convolution) to 48 at
#: most seen (an OpenVINO convolution before a bias 0.4% of its output; tf2onnx's ReLU half of a
#: PReLU: 44). A neighbour that agrees this well differs from the output by under 0.3%: either
#: reads the same int8 error.
AGREE_DB = 50.0
#: samples the fp32 twin is run on to find the layers' tensors
PROBE_SAMPLES = 8
#: the key suffix of a softmax layer's logits among the Keras outputs (layer_error.LOGITS)
LOGITS = "#logits"


@dataclass
class Match:
    """One compared entry: a Keras layer, or a fused group ending with it, and its tensors."""

    members: list[int]  # leaf indices in model order; the last is the layer whose output is compared
    at: str  # "output", or "logits" for a softmax layer
    pre: dict  # int8 entry: the float result before its output's quantize step
    post: dict  # int8 entry: the output as the next layer reads it (after its quantize steps)
    twin: str  # the fp32 twin's tensor
    fp32_snr_db: float  # how closely the twin's tensor equals the Keras output
    entries: set = field(default_factory=set)  # names of the int8 entries that are this layer's


def snr_db(ref: np.ndarray, q: np.ndarray, cap: float = 120.0) -> float:
    """10 log10(signal power / noise power), within +-cap."""
    # float32 dot products (BLAS): 5x faster than float64 copies on MobileNetV2's tensors, and a
    # float32 difference still resolves 140 dB
    ref = np.ascontiguousarray(ref, np.float32).ravel()
    diff = ref - np.ascontiguousarray(q, np.float32).ravel()
    signal, noise = float(np.dot(ref, ref)), float(np.dot(diff, diff))
    if noise <= signal * 10 ** (-cap / 10):
        return cap
    if signal == 0.0:
        return -cap
    return max(-cap, 10 * math.log10(signal / noise))


def layouts(value: np.ndarray, ref: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """``value`` (one row per sample) in the layouts that can hold ``ref``'s values:
    (array shaped as ``ref``, same shape?): as it is, channels moved last (ONNX and OpenVINO keep
    NCHW inside), and either of those reshaped where only the element count agrees."""
    if value.shape[0] != ref.shape[0] or value[0].size != ref[0].size:
        return []
    candidates = [value]
    if value.ndim >= 3:
        candidates.append(np.moveaxis(value, 1, -1))
    exact = [(c, True) for c in candidates if c.shape == ref.shape]
    return exact or [(c.reshape(ref.shape), False) for c in candidates]


def aligned(value: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray | None, bool, float]:
    """The layout of ``value`` closest to ``ref``: (array, same shape?, SNR), or (None, False,
    -inf) where none holds as many values. A same-shape layout wins over a reshaped one."""
    best = (None, False, -math.inf)
    for candidate, exact in layouts(value, ref):
        score = snr_db(ref, candidate)
        if (exact, score) > (best[1], best[2]):
            best = (candidate, exact, score)
    return best


# -- the Keras side: which layers read which ---------------------------------------------------

def is_model(layer) -> bool:
    return any(c.__name__ in ("Functional", "Sequential", "Model") for c in type(layer).__mro__) and hasattr(layer, "layers")


def is_input(layer) -> bool:
    return type(layer).__name__ == "InputLayer"


def _flat(value) -> list:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flat(item)]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [] if value is None else [value]


def _history_layer(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


def _inbound_layers(layer, members: set[int]) -> list | None:
    """The layers whose outputs ``layer`` reads inside the model whose layers are ``members``
    (ids), InputLayers included; None where its graph does not say (a subclassed model)."""
    for node in getattr(layer, "_inbound_nodes", []) or []:
        parents = [_history_layer(t) for t in _flat(getattr(node, "input_tensors", None))]
        if parents and all(p is not None and (id(p) in members or is_input(p)) for p in parents):
            return parents
    return None


def sources(model, leaves: list[dict]) -> dict[int, list[int | None]]:
    """Leaf index -> what it reads, in call order: the leaf layers whose outputs it takes (None
    for the model's input), nested models seen through; the leaf before it in model order where
    a model keeps no graph (a subclassed model)."""
    index = {leaf["path"]: i for i, leaf in enumerate(leaves)}
    read: dict[int, list[int | None]] = {}

    def walk(parent, prefix: tuple[str, ...], entry: list) -> list:
        layers = list(parent.layers)
        members = {id(layer) for layer in layers}
        produced: dict[int, list] = {}
        previous = entry
        for layer in layers:
            if is_input(layer):
                produced[id(layer)] = entry
                continue
            inbound = _inbound_layers(layer, members)
            if inbound is None:
                source = previous
            else:
                source = [s for p in inbound for s in (entry if is_input(p) else produced.get(id(p), []))]
            if is_model(layer):
                out = walk(layer, (*prefix, layer.name), source)
            else:
                i = index.get("/".join((*prefix, layer.name)))
                out = [i] if i is not None else source
                if i is not None:
                    read[i] = list(source)
            produced[id(layer)] = out
            previous = out
        outputs = [_history_layer(t) for t in _flat(getattr(parent, "outputs", None))]
        if outputs and all(o is not None and id(o) in produced for o in outputs):
            return [s for o in outputs for s in produced[id(o)]]
        return previous

    walk(model, (), [None])
    return read


def consumers(read: dict[int, list[int | None]]) -> dict[int, set[int]]:
    """Leaf index -> the leaves that read its output (from ``sources``)."""
    readers: dict[int, set[int]] = defaultdict(set)
    for child, parents in read.items():
        for parent in parents:
            if parent is not None:
                readers[parent].add(child)
    return readers


# -- the artifact side: the twin's tensors in the int8 artifact ----------------------------------

#: names a converter numbered itself: OpenVINO's Transpose_875 (no scope), tf2onnx's Conv2D__7
_GENERATED = re.compile(r"^[A-Za-z]+_\d+(:\d+)?$")
_COUNTER = re.compile(r"__\d+")


def _key(entry: dict) -> str | None:
    """The name a tensor keeps across conversions of one model (None: a generated one)."""
    name = (entry.get("tensor") or entry["name"]).split("#")[0]  # a reader's suffix that made it unique
    return None if _GENERATED.match(name) else _COUNTER.sub("", name)


def _sources(entries: list[dict]) -> dict[str, str | None]:
    """Entry name -> the entry it carries, quantize steps skipped (an entry itself otherwise)."""
    source: dict[str, str | None] = {}
    for entry in entries:
        if entry.get("quantize"):
            source[entry["name"]] = source.get(entry["inputs"][0]) if entry["inputs"] else None
        else:
            source[entry["name"]] = entry["name"]
    return source


def _shape(entry: dict):
    return None if entry["value"] is None else tuple(entry["value"].shape[1:])


def correspond(twin: list[dict], entries: list[dict]) -> dict[str, dict]:
    """Twin entry name -> the int8 entry that holds the same tensor: by a name unique in both,
    else by graph position (the one op of the same type and shape reading the counterparts of
    its inputs, quantize steps skipped)."""
    twin_source, source = _sources(twin), _sources(entries)
    plain_twin = [e for e in twin if not e.get("quantize")]
    plain = [e for e in entries if not e.get("quantize")]
    twin_keys = Counter(_key(e) for e in plain_twin)
    keys = Counter(_key(e) for e in plain)
    by_key = {_key(e): e for e in plain_twin if _key(e) is not None and twin_keys[_key(e)] == 1}
    readers: dict[tuple, list[dict]] = defaultdict(list)
    for e in plain_twin:
        if not e["graph_input"]:
            readers[(e.get("op"), tuple(sorted(str(twin_source.get(i)) for i in e["inputs"])))].append(e)
    twin_of: dict[str, str] = {}
    used: set[str] = set()
    # the graph's inputs: by name, else in the order they come (several inputs keep theirs)
    twin_inputs = [e for e in twin if e["graph_input"]]
    inputs = [e for e in plain if e["graph_input"]]
    named = {e["name"]: e for e in twin_inputs}
    for position, e in enumerate(inputs):
        found = named.get(e["name"]) or (twin_inputs[position] if len(twin_inputs) == len(inputs) else None)
        if found is not None:
            twin_of[e["name"]] = found["name"]
            used.add(found["name"])
    for e in plain:
        if e["graph_input"]:
            continue
        found = None
        key = _key(e)
        if key is not None and keys[key] == 1 and key in by_key and by_key[key]["name"] not in used:
            found = by_key[key]
        else:
            inputs = [twin_of.get(source.get(i) or "") for i in e["inputs"]]
            if inputs and None not in inputs:
                candidates = [t for t in readers.get((e.get("op"), tuple(sorted(inputs))), [])
                              if t["name"] not in used and _shape(t) == _shape(e)]
                found = candidates[0] if len(candidates) == 1 else None
        if found is not None:
            twin_of[e["name"]] = found["name"]
            used.add(found["name"])
    by_name = {e["name"]: e for e in entries}
    return {t: by_name[q] for q, t in twin_of.items()}


def _owners(leaves: list[dict], refs: dict, twin: list[dict], count: int) -> dict[str, tuple[int, str, float]]:
    """Twin entry name -> (leaf index, "output" or "logits", SNR) of the Keras output it equals."""
    keys: dict[int, list] = defaultdict(list)  # elements per sample -> (leaf, at, ref, its norm)
    for i, leaf in enumerate(leaves):
        for at, ref in (("logits", refs.get(leaf["path"] + LOGITS)), ("output", refs.get(leaf["path"]))):
            # a constant output (a ReLU dead on these samples) would equal any tensor as constant
            if ref is not None and len(ref) and np.ptp(ref[:count]) > 0:
                keys[ref[0].size].append((i, at, ref[:count], float(np.linalg.norm(ref[:count]))))
    # Equal within AGREE_DB means norms within this ratio: most pairs are ruled out without
    # comparing their values (MobileNetV2 has dozens of layers of one size).
    slack = 10 ** (-AGREE_DB / 20)
    owner = {}
    for entry in twin:
        value = entry["value"]
        if entry["graph_input"] or value is None or value.ndim < 1 or not len(value) or value.dtype.kind != "f":
            continue
        value = value[:count]
        norm = float(np.linalg.norm(value))
        best = None
        for i, at, ref, ref_norm in keys.get(value[0].size, []):
            if len(ref) != len(value) or abs(norm - ref_norm) > slack * ref_norm:
                continue
            _, exact, score = aligned(value, ref)
            if score >= AGREE_DB and (best is None or (exact, i) > best[0]):
                best = ((exact, i), i, at, score)
        if best is not None:
            owner[entry["name"]] = best[1:]
    return owner


def _chain_end(entry: dict, readers: dict[str, list[dict]]) -> tuple[dict, list[str]]:
    """The last of the quantize steps that take ``entry`` on (itself where none or several do)."""
    names, last = [], entry
    while True:
        steps = [r for r in readers.get(entry["name"], []) if r.get("quantize")]
        if len(steps) != 1:
            return last, names
        entry = steps[0]  # ONNX: QuantizeLinear (no float value), then its DequantizeLinear
        names.append(entry["name"])
        if entry["value"] is not None:
            last = entry


def match_layers(leaves: list[dict], refs: dict, twin: list[dict], entries: list[dict],
                 readers_of: dict[int, set[int]]) -> tuple[list[Match], list[int]]:
    """The compared entries (model order of their last layer) and the leaf indices left unmatched.

    Args:
        leaves: ``layer_error.keras_layers`` of the model.
        refs: the Keras outputs (``layer_error.float_outputs``), path -> array.
        twin: the fp32 twin's entries (its format's ``read_intermediates``).
        entries: the int8 artifact's entries.
        readers_of: ``consumers(sources(model, leaves))``.
    """
    owner = _owners(leaves, refs, twin, PROBE_SAMPLES)
    counterpart = correspond(twin, entries)
    readers: dict[str, list[dict]] = defaultdict(list)
    for entry in entries:
        for name in entry["inputs"]:
            readers[name].append(entry)
    found: dict[int, list] = defaultdict(list)  # leaf -> [(at, twin entry, int8 entry, snr)]
    # A QAT model's layer outputs are fake-quantized: its twin's quantize step equals them, and
    # the int8 tensor it stands for is the counterpart of the op that step quantizes.
    carried = _sources(twin)
    for entry in twin:
        base = carried.get(entry["name"]) if entry.get("quantize") else entry["name"]
        if entry["name"] in owner and base in counterpart:
            i, at, score = owner[entry["name"]]
            found[i].append((at, entry, counterpart[base], score))
    by_name = {entry["name"]: entry for entry in entries}
    source = _sources(entries)
    matches: dict[int, Match] = {}
    for i, tensors in found.items():
        at = "logits" if any(t[0] == "logits" for t in tensors) else "output"
        tensors = [t for t in tensors if t[0] == at]
        last = tensors[-1]  # the last of the layer's tensors: a transpose after it is the same values
        post, steps = _chain_end(last[2], readers)
        owned = {t[2]["name"] for t in tensors}
        pre = last[2]
        while True:  # back over ops that only re-lay out this layer's own quantized tensor
            earlier = [source.get(name) for name in pre["inputs"] if by_name.get(name, {}).get("quantize")]
            earlier = [name for name in earlier if name in owned and name != pre["name"]]
            if len(earlier) != 1:
                break
            owned.discard(pre["name"])
            pre = by_name[earlier[0]]
        names = {t[2]["name"] for t in tensors} | set(steps)
        matches[i] = Match([i], at, pre, post, last[1]["name"], last[3], names)
    unmatched = []
    for u in range(len(leaves)):
        if u in matches:
            continue
        path = leaves[u]["path"]
        if path not in refs and path + LOGITS not in refs:
            unmatched.append(u)
            continue
        reached, seen, stack = set(), {u}, list(readers_of.get(u, ()))
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            if c in matches:
                reached.add(c)
            else:
                stack.extend(readers_of.get(c, ()))
        if reached:
            matches[min(reached)].members.append(u)
        else:
            unmatched.append(u)
    for match in matches.values():
        match.members.sort()  # a layer's readers come after it: the compared layer stays last
    return [matches[i] for i in sorted(matches)], unmatched
