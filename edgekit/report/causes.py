"""Why a row is slow, in words, read from its per-op profile (``edgekit.bench.profiles``).

Only what the profiles show, with its numbers: ops outside the accelerated kernels and their
share of the time, QuantizeLinear/DequantizeLinear nodes, reference kernels, and, against a
reference row (the fp32 sibling, or the same variant in another runtime), how the accelerated
part itself compares. "Accelerated" is defined once, in ``edgekit.bench.profiles``.
"""

from __future__ import annotations

import importlib

from edgekit.runtimes.wording import NAMED_SHARE, blamed
from edgekit.runtimes.wording import pct as _pct

#: at most this many phrases per cause
MAX_PHRASES = 3


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
    other = None
    if reference is not None and reference.get("format") != row.get("format"):
        # another runtime's ops, kernels and clocks do not compare one to one: only its structure
        other, reference = reference, None
    # What a profile means is the runtime's own knowledge: its module's ``explain`` words it.
    out: list[str] = list(_explainer(row)(row, profile, reference) or [])
    minor = blamed(profile.get("not_accelerated") or {}) < NAMED_SHARE
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


def _explainer(row: dict):
    """The ``explain(row, profile, reference)`` of the row's runtime module (the format table's),
    or one that says nothing for a format without one."""
    from edgekit.formats import FORMATS

    fmt = FORMATS.get(row.get("format"))
    if fmt is None:
        return lambda *args: []
    return getattr(importlib.import_module(fmt.runtime_module), "explain", lambda *args: [])
