"""Why a row is slow, in words, read from its per-op profile (``edgekit.bench.profiles``).

Only what the profiles show, with its numbers: ops outside the accelerated kernels and their
share of the time, QuantizeLinear/DequantizeLinear nodes, reference kernels, and, against a
reference row (the fp32 sibling, or the same variant in another runtime), how the accelerated
part itself compares. "Accelerated" is defined once, in ``edgekit.bench.profiles``.
"""

from __future__ import annotations

#: an op type is named as a cause from this share of the row's time
NAMED_SHARE = 0.05
#: at most this many phrases per cause
MAX_PHRASES = 3
#: what OpenVINO's performance counters resolve, per node
OPENVINO_RESOLUTION_MS = 0.001


def _pct(share: float | None) -> str:
    return "an unknown share" if share is None else f"{share:.0%}"


def _us(ms: float | None) -> str:
    if ms is None:
        return "?"
    return f"{ms * 1e3:.3g} us" if ms < 1 else f"{ms:.3g} ms"


def _names(types: list[str], limit: int = 3) -> str:
    shown = ", ".join(types[:limit])
    return shown + (f" and {len(types) - limit} more" if len(types) > limit else "")


def phrases(row: dict, reference: dict | None = None) -> list[str]:
    """Short phrases saying where ``row``'s time goes and what is not accelerated, worst first;
    empty when the row has no profile.

    Args:
        row: a results row with ``profile`` (results.json's summary).
        reference: the row it is compared with (its fp32 sibling, or the same variant in
            another runtime). Only a row of the same runtime is compared op by op (the
            accelerated part's time, the nodes executed); another runtime's is ignored here.
    """
    profile = row.get("profile") or {}
    if not profile.get("top_op_types") and not profile.get("ops"):
        return []
    runtime = (profile.get("runtime") or row.get("runtime") or "").split(" ")[0]
    other = None
    if reference is not None and reference.get("format") != row.get("format"):
        # another runtime's ops, kernels and clocks do not compare one to one: only its structure
        other, reference = reference, None
    out: list[str] = []
    if profile.get("partitions") is not None or runtime in ("ai_edge_litert", "tflite_runtime"):
        out += _litert(row, profile, reference)
    elif profile.get("qdq") is not None:
        out += _onnxruntime(row, profile, reference)
    elif profile.get("precisions") is not None:
        out += _openvino(row, profile, reference)
    minor = ((profile.get("not_accelerated") or {}).get("share") or 0) < NAMED_SHARE
    if other is not None and minor:  # nothing much is left unaccelerated: the structure is what differs
        out = _across(profile, other) + out
    return out[:MAX_PHRASES]


def _across(profile: dict, other: dict) -> list[str]:
    """What the structure of two runtimes' profiles says: one kernel call per node against
    XNNPACK partitions that each run many ops in one call."""
    theirs = other.get("profile") or {}
    if theirs.get("partitions") and profile.get("partitions") is None and profile.get("ops"):
        covered = sum(t["count"] for t in theirs.get("top_op_types") or [] if t["type"] == "XNNPACK partition")
        nodes = f"{profile['ops']} nodes, one kernel call each" if profile["ops"] > 1 else "1 node"
        return [(f"{nodes}, vs {theirs['partitions']} XNNPACK partition(s) "
                 f"running {covered} of {theirs.get('ops')} ops in {other['id']}")]
    top = (theirs.get("kernels") or [None])[0]  # OpenVINO: the kernel the faster row spends most in
    if top and (top.get("share") or 0) >= 0.5:
        return [(f"{other['id']} spends {_pct(top['share'])} of its time in {top['type']} on "
                 f"{top['exec_type']} kernels")]
    return []


def cause(row: dict, reference: dict | None = None) -> str | None:
    """``phrases`` joined into one line, or None."""
    found = phrases(row, reference)
    return "; ".join(found) if found else None


def _slow_types(profile: dict) -> list[dict]:
    """The not-accelerated entries of top_op_types, by share."""
    return [t for t in profile.get("top_op_types") or [] if not t.get("accelerated")]


def _litert(row: dict, profile: dict, reference: dict | None) -> list[str]:
    out = []
    slow = profile.get("not_accelerated") or {}
    partitions = profile.get("partitions") or 0
    precision = row.get("precision")
    named = [t for t in _slow_types(profile) if (t.get("share") or 0) >= NAMED_SHARE]
    ref_types = {t["type"]: t for t in _slow_types((reference or {}).get("profile") or {})}
    if slow.get("ops") and not partitions:
        why = " (no XNNPACK kernels for int16 activations)" if precision == "int16x8" else ""
        top = ", ".join(f"{t['type']} {_pct(t['share'])}" for t in named[:3])
        out.append(f"no op runs in XNNPACK{why}: all {slow['ops']} ops on built-in kernels"
                   + (f" ({top} of time)" if top else ""))
    elif named:
        for t in named[:2]:
            verb = "runs" if t["count"] == 1 else f"({t['count']} ops) run"
            out.append(f"{t['type']} {verb} outside XNNPACK on built-in kernels: {_pct(t['share'])} of time"
                       + (f" ({_us(t.get('ms'))})" if t.get("ms") is not None else ""))
            # the same op outside XNNPACK in the reference row too: how much slower it is here
            other = ref_types.get(t["type"])
            if other and other.get("ms") and t.get("ms") and t["ms"] / other["ms"] > 1.5:
                out.append(f"{t['type']} takes {t['ms'] / other['ms']:.1f}x as long as in {reference.get('precision')} "
                           f"({_us(t['ms'])} vs {_us(other['ms'])})")
    elif slow.get("ops"):
        out.append(f"{slow['ops']} op(s) outside XNNPACK ({_names(slow.get('types') or [])}): "
                   f"{_pct(slow.get('share'))} of time")
    else:
        out.append("every op in XNNPACK")
    edges = [t for t in profile.get("top_op_types") or [] if t["type"] in ("QUANTIZE", "DEQUANTIZE")]
    if edges and precision not in ("fp32", "fp16"):
        share = sum(t.get("share") or 0 for t in edges)
        if share >= NAMED_SHARE:
            out.append(f"{precision} adds QUANTIZE/DEQUANTIZE at the edges: {_pct(share)} of time")
    mine = profile.get("xnnpack") or {}
    theirs = ((reference or {}).get("profile") or {}).get("xnnpack") or {}
    if reference is not None and mine.get("ms") and theirs.get("ms") and (mine.get("share") or 0) >= NAMED_SHARE:
        ratio = mine["ms"] / theirs["ms"]
        if ratio > 1.1:
            out.append(f"the XNNPACK part itself takes {ratio:.2f}x as long at {precision} "
                       f"({_us(mine['ms'])} vs {_us(theirs['ms'])} in {reference.get('precision')})")
    return out


#: nodes that convert or move data without computing: what a quantized ONNX graph adds
LAYOUT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Transpose", "Reshape", "Cast",
                        "ReorderInput", "ReorderOutput", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Concat"})


def _onnxruntime(row: dict, profile: dict, reference: dict | None) -> list[str]:
    found = []  # (share, phrase): the largest share first
    qdq = profile.get("qdq") or {}
    if qdq.get("left_unfused"):
        found.append((qdq.get("left_unfused_share") or 0, (f"{qdq['left_unfused']} QuantizeLinear/DequantizeLinear "
                      f"node(s) left unfused inside the graph: {_pct(qdq.get('left_unfused_share'))} of time")))
    edges = (qdq.get("nodes") or 0) - (qdq.get("left_unfused") or 0)
    if edges and row.get("precision") not in ("fp32", "fp16"):
        edge_share = round((qdq.get("share") or 0) - (qdq.get("left_unfused_share") or 0), 4)
        found.append((edge_share, (f"{edges} QuantizeLinear/DequantizeLinear node(s) at the graph edges: "
                                   f"{_pct(edge_share)} of time")))
    floats = profile.get("float_compute") or {}
    if floats.get("nodes"):
        found.append((floats.get("share") or 0, (f"{floats['nodes']} {'/'.join(floats.get('types') or [])} node(s) "
                      f"run in float in the {row.get('precision')} graph: {_pct(floats.get('share'))} of time")))
    out = [phrase for _, phrase in sorted(found, key=lambda item: -item[0])]
    ref = (reference or {}).get("profile") or {}
    if reference is not None and ref.get("ops") and profile.get("ops") and profile["ops"] > ref["ops"]:
        mine, theirs = profile.get("op_counts") or {}, ref.get("op_counts") or {}
        extra = [t for t, n in mine.items() if n > theirs.get(t, 0) and t in LAYOUT_OPS]
        out.append(f"{profile['ops']} nodes executed vs {ref['ops']} in {reference.get('precision')}"
                   + (f" (more {', '.join(extra)})" if extra else ""))
    if not out:
        slow = profile.get("not_accelerated") or {}
        minor = slow.get("share") is not None and slow["share"] < NAMED_SHARE
        out.append("every node in its fused or quantized kernel" if not slow.get("ops") else
                   f"{_pct(slow.get('share'))} of time outside optimized kernels" if minor else
                   f"{slow['ops']} node(s) not accelerated ({_names(slow.get('types') or [])}): "
                   f"{_pct(slow.get('share'))} of time")
    return out


def _openvino(row: dict, profile: dict, reference: dict | None) -> list[str]:
    out = []
    wanted = row.get("precision")
    ops = (profile.get("not_accelerated") or {}).get("top") or []
    groups: dict[tuple, list] = {}
    for op in ops:
        if op.get("where") == "reference kernel":
            why = f"ran {op['precision']} reference kernels"
        elif op.get("where") == "no kernel of its own":
            why = f"node(s) (exec_type {op['exec_type']}, no kernel of its own: its body's kernels are not listed)"
        else:
            why = f"ran at {op['precision']}, not {wanted}"
        groups.setdefault((op["type"], why), []).append(op)
    ranked = sorted(groups.items(), key=lambda item: -sum(o.get("share") or 0 for o in item[1]))
    for (node_type, why), members in ranked:
        share = sum(o.get("share") or 0 for o in members)
        if share < NAMED_SHARE:
            continue
        if why.startswith("node(s)"):
            out.append(f"{len(members)} {node_type} {why}: {_pct(share)} of time")
        else:
            out.append(f"{len(members)} {node_type} node(s) {why}: {_pct(share)} of time")
    # The counters keep whole microseconds (a running average, rounded down): a sum over n nodes
    # may be short by up to n us. A claim must hold at both ends of that range.
    kernels = profile.get("total_ms")
    slack = OPENVINO_RESOLUTION_MS * (profile.get("ops") or 0)
    ref = (reference or {}).get("profile") or {}
    if reference is not None and kernels and ref.get("total_ms"):
        ratio = kernels / ref["total_ms"]
        low = kernels / (ref["total_ms"] + OPENVINO_RESOLUTION_MS * (ref.get("ops") or 0))
        if low > 1.1:
            out.append(f"its kernels take {ratio:.2f}x as long as {reference.get('precision')}'s by OpenVINO's "
                       f"counters ({_us(kernels)} vs {_us(ref['total_ms'])})")
    p50 = (row.get("latency_ms") or {}).get("p50")
    harness = row.get("harness") or {}
    own = harness.get("runtime_only_ms")  # OpenVINO's own clock of one infer()
    if own and kernels and kernels + slack < 0.5 * own:
        python = f" (Python adds {_us(harness['harness_ms'])})" if harness.get("harness_ms") is not None else ""
        out.append(f"OpenVINO's node kernels take {_us(kernels)} of the {_us(own)} its own clock gives one "
                   f"infer(){python}: the rest is the infer request's own work outside the nodes")
    elif not own and p50 and kernels and kernels + slack < 0.5 * p50:
        out.append(f"OpenVINO's node kernels take {_us(kernels)} of its {_us(p50)} p50: the rest is spent "
                   "outside them (the infer request's own cost per call)")
    if not out:
        slow = profile.get("not_accelerated") or {}
        minor = slow.get("share") is not None and slow["share"] < NAMED_SHARE
        out.append("every node in an optimized kernel at its precision" if not slow.get("ops") else
                   f"{_pct(slow.get('share'))} of time outside optimized kernels" if minor else
                   f"{slow['ops']} node(s) not accelerated ({_names(slow.get('types') or [])}): "
                   f"{_pct(slow.get('share'))} of time")
    return out
