"""Results rows: one (variant, target) measurement as the row of results.json, speedups with
their 95% intervals, and the verdicts across rows ("int8 slower than fp32"), stated only where
the interval says so."""

from __future__ import annotations

from typing import Any

from edgekit.bench.stats import ratio_interval, summarize, summarize_rounds
from edgekit.evaluate import scores
from edgekit.report.causes import cause
from edgekit.results.read import latency_problem, non_finite
from edgekit.variant import Variant

#: Without an interval (a row timed in one round) a quantized row is called slower than fp32 past
#: this p50 ratio; closer than 5% is timing noise on a shared machine.
SLOWER = 1.05


def make_row(row_id: str, variant: Variant, target: str, m, baseline: Variant,
             unstable_spread: float | None = None, clock_change: float | None = None,
             again: str = "edgekit build --retime") -> dict[str, Any]:
    """One results row: ``variant`` measured as ``m`` on ``target``, its delta against ``baseline``.
    A row whose round p50s spread more than ``unstable_spread`` is marked unstable, with a note
    whose advice is the command ``again`` (``edgekit bench`` for its own rows).
    The clocks read around its rounds go to ``timing.clocks``, with a note for a governor other
    than performance, a core frequency that moved more than ``clock_change`` and a temperature
    wait that timed out (``clock_notes``); the device that measured it (a pool's member) to
    ``device``, the tries before it to ``retries``, the end of its rounds to ``measured_at``.

    NaN or inf metrics and NaN, inf or non-positive latencies are not measurements (and a NaN
    passes every budget, since it compares False): they are dropped from the row, and an ok row
    holding them is marked failed with the reason.
    """
    evaluated = variant.status == "ok"
    row = {
        "id": row_id,
        "model": variant.model,
        "parent": variant.parent,
        "format": variant.format,
        "precision": variant.precision,
        "target": target,
        "status": m.status,
        "reason": m.reason,
        "path": str(variant.path) if variant.path else None,
        "size_bytes": variant.size_bytes,
        "gzip_bytes": variant.gzip_bytes,
        "weights": variant.weights,
        "metrics": variant.metrics if evaluated else {},
        "delta": scores.delta(variant.metrics, baseline.metrics) if evaluated else {},
        "parity": variant.parity if evaluated else {},
        "latency_ms": summarize(m.latencies_ms) if m.status == "ok" and m.latencies_ms else None,
        "speedup_vs_baseline": None,
        "runtime": m.runtime or variant.runtime,
        "settings": {**variant.settings, **(m.settings or {})},
        "notes": [],
    }
    if evaluated and variant.outputs:  # a model of several outputs: each one scored on its own
        row["outputs"] = outputs_block(variant.outputs, baseline.outputs)
    if variant.io:  # the artifact's inputs and outputs as they ran (names, dtypes, shapes, quantization)
        row["io"] = variant.io
    if getattr(m, "harness", None):
        row["harness"] = m.harness
    for field in ("device", "retries", "measured_at"):
        if getattr(m, field, None):
            row[field] = getattr(m, field)
    # What a target measured besides latency (an mcu target's arena, flash and C array) travels in
    # its settings' "row_fields": fields of their own here (never replacing one), notes appended.
    extra = dict(row["settings"].pop("row_fields", None) or {})
    row["notes"] += list(extra.pop("notes", []))
    row.update({key: value for key, value in extra.items() if key not in row})
    if evaluated and variant.layer_error.get("layers"):
        row["layer_error"] = layer_error_summary(variant.layer_error)
    if evaluated and (mixed := variant.settings.get("mixed")):
        row["notes"].append(mixed_note(mixed))
    if evaluated and (fast := variant.settings.get("fast")):
        row["notes"].append(fast_note(fast))
    reasons = drop_impossible_values(row)
    if reasons and row["status"] == "ok":
        row.update(status="failed", reason="; ".join(reasons))
    if row["latency_ms"] and getattr(m, "rounds_ms", None):
        row["timing"] = summarize_rounds(row["latency_ms"]["p50"], m.rounds_ms, unstable_spread, m.interleaved)
        if row["timing"].get("unstable"):
            row["notes"].append(unstable_note(row["timing"], unstable_spread, again))
        if getattr(m, "clocks", None):
            row["timing"]["clocks"] = m.clocks
            row["notes"] += clock_notes(m.clocks, 0.10 if clock_change is None else clock_change,
                                        getattr(m, "device", None) or target)
    return row


def outputs_block(outputs: dict[str, dict], baseline_outputs: dict[str, dict] | None) -> dict[str, dict]:
    """A row's ``outputs``: per output its task, primary metric, metrics, delta against the
    baseline row's same output, parity, and whether it gave the row's headline metrics."""
    base = baseline_outputs or {}
    return {name: {**rec, "delta": scores.delta(rec.get("metrics") or {}, (base.get(name) or {}).get("metrics") or {})}
            for name, rec in outputs.items()}


def clock_notes(clocks: dict, clock_change: float, where: str) -> list[str]:
    """What the clocks of a row's rounds say against trusting its figures: a governor other than
    performance (the kernel may change the clock between and within runs), a core whose frequency
    moved more than ``clock_change``, a wait for the temperature that timed out."""
    notes = []
    others = [g for g in clocks.get("governors") or [] if g != "performance"]
    if others:
        notes.append(f"CPU governor {', '.join(others)} on {where}, not performance: the clock may change during the "
                     "rounds; pin it (cpupower frequency-set -g performance) for stable timings")
    change = clocks.get("freq_change")
    if change is not None and change > clock_change:
        core, (low, high) = max((clocks.get("freq_mhz") or {}).items(),
                                key=lambda kv: (kv[1][1] - kv[1][0]) / (kv[1][1] or 1))
        notes.append(f"CPU frequency moved during the rounds on {where}: core {core} {high:g} -> {low:g} MHz "
                     f"({change:.0%}, more than benchmark.clock_change {clock_change:.0%}): throttled or not pinned")
    late = [w for w in clocks.get("waits") or [] if w.get("reached") is False]
    if late:
        worst = max(late, key=lambda w: w.get("end_c") or 0)
        notes.append(f"{len(late)} round(s) on {where} started above wait_below_c {worst['limit_c']:g} C after waiting "
                     f"{worst['waited_s']:.0f} s (still {worst['end_c']:g} C): raise wait_timeout_s or cool the device")
    return notes


def unstable_note(timing: dict[str, Any], unstable_spread: float, again: str) -> str:
    """Why a row's timing is unstable: its rounds disagree (robust spread), or they fall into two
    speeds (their range, the slowest round left out); and the command that times it again."""
    from edgekit.bench.stats import BIMODAL

    rounds = sorted(timing.get("round_p50_ms") or [])
    if timing["robust_spread"] > unstable_spread or len(rounds) < 2:
        why = (f"the round p50s disagree by {timing['robust_spread']:.0%} (robust spread, more than "
               f"{unstable_spread:.0%})")
    else:
        shown = " / ".join(f"{r:.3g}" for r in rounds)
        why = (f"the round p50s ({shown} ms) fall into two speeds: {timing['range_ratio']:.2f}x apart without the "
               f"slowest round (more than {1 + BIMODAL * unstable_spread:.2f}x)")
    return f"unstable timing: {why}; the machine was busy: time again with `{again}`"


#: how many of the layers that lose most to int8 a results row lists (all of them: layer_errors/)
WORST_LAYERS = 5


def layer_error_summary(record: dict[str, Any]) -> dict[str, Any]:
    """results.json's ``layer_error`` of a row: the WORST_LAYERS layers that lose most, and how."""
    layers = record.get("layers") or []
    return {**{k: v for k, v in record.items() if k != "layers"}, "layers_measured": len(layers),
            "worst": layers[:WORST_LAYERS]}


def mixed_note(mixed: dict[str, Any]) -> str:
    """What an int8-mixed row's search kept float and the validation drop it reached, or why it
    could not meet quantize.max_drop."""
    kept = mixed.get("kept_float") or []
    shown = f"{len(kept)} layer(s) kept float ({', '.join(kept)})" if kept else "no layer kept float (int8 holds)"
    drops = ""
    if isinstance(mixed.get("drop"), (int, float)):
        before = f"{mixed['int8_drop']:+.4f} in int8 -> " if isinstance(mixed.get("int8_drop"), (int, float)) and kept else ""
        drops = f"; validation {mixed.get('metric', 'metric')} drop {before}{mixed['drop']:+.4f} (max_drop {mixed.get('budget')})"
    if mixed.get("met", True):
        return f"int8-mixed: {shown}{drops}"
    return f"int8-mixed missed max_drop {mixed.get('budget')}: {mixed.get('reason') or 'no trial met it'}; best: {shown}{drops}"


#: how many of the layer groups an int8-fast note names with their times
FAST_SHOWN = 4


def fast_note(fast: dict[str, Any]) -> str:
    """What an int8-fast row kept float and why (each group's measured int8 and fp32 us), which
    nodes it pinned to other kernels (their us against the default's), and how the whole model
    compared, with intervals (``edgekit.convert.fast``)."""
    groups = [g for g in fast.get("groups") or [] if g.get("float")]
    whole = fast.get("whole") or {}
    choice = fast.get("choice")

    def speedup(name: str, key: str) -> str:
        entry = whole.get(name) or {}
        interval = entry.get(f"{key}_ci95")
        if entry.get(key) is None:
            return "?"
        return f"{entry[key]:.2f}x" + (f" [{interval[0]:.2f}-{interval[1]:.2f}]" if interval else "")

    kernels = _pinned_kernels(fast) if choice in ("candidate", "kernels") else ""
    if choice == "kernels":
        return (f"int8-fast: {kernels}; whole model {speedup('kernels', 'speedup_vs_int8')} plain int8, "
                f"{speedup('kernels', 'speedup_vs_fp32')} fp32")
    if choice == "candidate":
        by_gain = sorted(groups, key=lambda g: -(g["int8_us"][0] - g["fp32_us"][0]))
        shown = ", ".join(f"{g['group']} ({g['int8_us'][0]:.1f} vs {g['fp32_us'][0]:.1f} us)" for g in by_gain[:FAST_SHOWN])
        more = f" and {len(groups) - FAST_SHOWN} more" if len(groups) > FAST_SHOWN else ""
        return (f"int8-fast: {len(groups)} layer group(s) kept float, their int8 kernels slower than fp32 here "
                f"(int8 vs fp32: {shown}{more}){'; ' + kernels if kernels else ''}; whole model "
                f"{speedup('candidate', 'speedup_vs_int8')} plain int8, {speedup('candidate', 'speedup_vs_fp32')} fp32")
    if choice == "fp32":
        return f"int8-fast is the fp32 artifact: {fast.get('why')}"
    return f"int8-fast is plain int8 ({speedup('int8', 'speedup_vs_fp32')} fp32): {fast.get('why')}"


def _pinned_kernels(fast: dict[str, Any]) -> str:
    """The int8 nodes int8-fast pinned to other kernels, the biggest gains first, each with its
    kernel and time against the runtime's default (``fast["kernels"]``); "" where none."""
    rows = [(k, k["alternatives"][k["pinned"]]) for k in fast.get("kernels") or [] if k.get("pinned")]
    if not rows:
        return ""
    rows.sort(key=lambda pair: pair[1]["us"][0] - pair[0]["default_us"][0])
    shown = ", ".join(f"{k['node']} ({alt['us'][0]:.1f} us {alt['exec_type']} vs {k['default_us'][0]:.1f} us "
                      f"{k['default']})" for k, alt in rows[:FAST_SHOWN])
    more = f" and {len(rows) - FAST_SHOWN} more" if len(rows) > FAST_SHOWN else ""
    return f"{len(rows)} int8 node(s) pinned to kernels faster than the runtime's default here ({shown}{more})"


def drop_impossible_values(row: dict[str, Any]) -> list[str]:
    """Clear the metrics or latency of ``row`` that cannot be measurements; return why, one reason each."""
    reasons = []
    if bad := [f"{why} {name}" for name, value in row["metrics"].items() if (why := non_finite(value))]:
        reasons.append(f"runtime produced {', '.join(bad)} (the artifact outputs NaN or inf on the test split)")
        row.update(metrics={}, delta={}, parity={})
    # A NaN baseline metric makes every delta NaN; the row's own metric is fine, so it stays ok.
    row["delta"] = {name: value for name, value in row["delta"].items() if not non_finite(value)}
    lat = row["latency_ms"] or {}
    if bad := [f"{key} {why}" for key, value in lat.items() if (why := latency_problem(key, value))]:
        reasons.append(f"benchmark on {row['target']} produced impossible latencies in ms ({', '.join(bad)})")
        row["latency_ms"] = None
    return reasons


def _usable_p50(lat: dict | None) -> float | None:
    """A latency summary's p50 when it can divide or be divided by (finite, above zero), else None."""
    p50 = (lat or {}).get("p50")
    return p50 if p50 is not None and latency_problem("p50", p50) is None else None


def add_speedups(rows: list[dict]) -> None:
    """Speedup against the baseline row and against fp32 of the same model in the same runtime
    (or of the base model, for QAT models that have no fp32), each with its 95% interval; a
    note wherever a quantized row is significantly slower than that fp32 row, or looks slower
    but is not significantly so."""
    # Only finite p50s above zero divide: a 0, NaN or inf p50 gives no speedup, never an exception.
    base_row = speedup_baseline(rows) or {}
    base = _usable_p50(base_row.get("latency_ms"))
    by_key = {(r["model"], r["format"], r["precision"], r["target"]): r for r in rows}
    for row in rows:
        p50 = _usable_p50(row["latency_ms"])
        if p50 is None:
            continue
        if base:
            row["speedup_vs_baseline"] = base / p50
            row["speedup_vs_baseline_ci95"] = None if row is base_row else ratio_interval(base_row, row, paired(base_row, row))
        if row["precision"] == "fp32":
            continue
        fp32 = by_key.get((row["model"], row["format"], "fp32", row["target"])) or by_key.get(
            ("base", row["format"], "fp32", row["target"])
        )
        if fp32 and (fp32_p50 := _usable_p50(fp32["latency_ms"])):
            row["vs_fp32_same_runtime"] = fp32_p50 / p50
            row["vs_fp32_same_runtime_ci95"] = ratio_interval(fp32, row, paired(fp32, row))
            if note := slower_note(row, p50 / fp32_p50, ratio_interval(row, fp32, paired(row, fp32))):
                if "slower than" in note and (why := cause(row, fp32)):
                    note += f"; cause: {why}"
                row["notes"].append(note)
    for row in rows:
        if note := other_runtime_note(row, rows):
            row["notes"].append(note)


#: a row is called much slower than the same variant in another runtime when the whole 95%
#: interval of its p50 ratio lies past this
MUCH_SLOWER = 1.5


def other_runtime_note(row: dict, rows: list[dict]) -> str | None:
    """A note when ``row`` is significantly more than MUCH_SLOWER times slower than the fastest
    row of the same model and precision in another runtime on the same target (Keras rows are
    not compared), naming the cause from the profiles where they show one. Only with an
    interval (rows timed in two rounds or more): a one-round ratio says nothing significant."""
    p50 = _usable_p50(row["latency_ms"])
    if p50 is None or row["format"] == "keras":
        return None
    same = (row.get("model"), row.get("precision"), row.get("target"))
    others = [r for r in rows if r is not row and r.get("format") not in ("keras", row["format"])
              and r.get("status", "ok") == "ok" and (r.get("model"), r.get("precision"), r.get("target")) == same
              and _usable_p50(r.get("latency_ms"))]
    if not others:
        return None
    fastest = min(others, key=lambda r: _usable_p50(r["latency_ms"]))
    ratio = p50 / _usable_p50(fastest["latency_ms"])
    interval = ratio_interval(row, fastest, paired(row, fastest))
    if interval is None or interval[0] <= MUCH_SLOWER:
        return None
    shown = f"{ratio:.2f}x [{interval[0]:.2f}-{interval[1]:.2f}]"
    note = f"slower than {fastest['id']} ({fastest['runtime'] or fastest['format']}): {shown}"
    why = cause(row, fastest)
    return f"{note}; cause: {why}" if why else note


def paired(a: dict, b: dict) -> bool:
    """Whether two rows were timed in the same interleaved rounds (same target, same run, and
    for a pool the same member: its jobs on different devices ran in rounds of their own)."""
    return a["target"] == b["target"] and a.get("device") == b.get("device") \
        and bool((a.get("timing") or {}).get("interleaved")) and bool((b.get("timing") or {}).get("interleaved"))


def slower_note(row: dict, ratio: float, interval: list[float] | None) -> str | None:
    """The verdict on a quantized row's p50 / its fp32 row's p50, from its 95% interval: slower
    when the interval lies past 5% (a slowdown the user should act on, not a 2% one that the
    next run may not repeat: reruns here drift by about 2%); "possibly by less than 5%" when it
    lies above 1 but reaches below 1.05; "no significant difference" when the point is past 5%
    but the interval holds 1. Without an interval (one round): the 5% threshold, saying so."""
    where = f"{row['precision']} {{}} fp32 in {row['runtime'] or row['format']}"
    if ratio <= SLOWER and (interval is None or interval[0] <= SLOWER):
        return None
    if interval is None:
        return f"{where.format('slower than')}: {ratio:.2f}x (one round: no interval)"
    lo, hi = interval
    shown = f"{ratio:.2f}x [{lo:.2f}-{hi:.2f}]"
    if lo > SLOWER:
        return f"{where.format('slower than')}: {shown}"
    if lo > 1:
        return f"{where.format('slower than')}, possibly by less than 5%: {shown}"
    return f"{where.format('vs')}: no significant difference ({shown})"


def speedup_baseline(rows: list[dict]) -> dict | None:
    """The row speedups are relative to: the Keras fp32 model on a reference target (the GPU,
    see ``Target.is_reference``) when it was timed there, else the first row (the Keras fp32
    model on this machine's CPU)."""
    from edgekit.targets import reference_names

    references = reference_names()
    for row in rows:
        # a gpu row timed on the CPU in test mode (EDGEKIT_GPU_ALLOW_CPU) is no GPU reference
        if row.get("format") == "keras" and row.get("target") in references and row.get("latency_ms") \
                and not (row.get("settings") or {}).get("test_mode"):
            return row
    return rows[0] if rows else None


def latency_by_target(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """Each variant's latency on every target, side by side: ``{stem: {target: {...}}}``."""
    table: dict[str, dict[str, dict]] = {}
    for row in rows:
        lat = row["latency_ms"] or {}
        table.setdefault(row["id"].rsplit("@", 1)[0], {})[row["target"]] = {
            "status": row["status"], "p50": lat.get("p50"), "p90": lat.get("p90"), "runtime": row["runtime"]}
    return table
