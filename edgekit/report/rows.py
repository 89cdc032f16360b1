"""Results rows: one (variant, target) measurement as the row of results.json, speedups and
the "slower than fp32" notes across rows."""

from __future__ import annotations

from typing import Any

from edgekit.bench.stats import summarize
from edgekit.check.baseline import latency_problem, non_finite
from edgekit.evaluate import scores
from edgekit.evaluate.variant import Variant

#: A quantized row is called slower than fp32 past this p50 ratio; closer than 5% is timing noise
#: on a shared machine (two runs of the same file differ by that much).
SLOWER = 1.05


def make_row(row_id: str, variant: Variant, target: str, m, baseline: Variant) -> dict[str, Any]:
    """One results row: ``variant`` measured as ``m`` on ``target``, its delta against ``baseline``.

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
    reasons = drop_impossible_values(row)
    if reasons and row["status"] == "ok":
        row.update(status="failed", reason="; ".join(reasons))
    return row


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
    """Speedup against the baseline row, and a note wherever a quantized row is slower than fp32
    of the same model in the same runtime (or of the base model, for QAT models that have no fp32)."""
    # Only finite p50s above zero divide: a 0, NaN or inf p50 gives no speedup, never an exception.
    base = _usable_p50((speedup_baseline(rows) or {}).get("latency_ms"))
    by_key = {(r["model"], r["format"], r["precision"], r["target"]): r for r in rows}
    for row in rows:
        p50 = _usable_p50(row["latency_ms"])
        if p50 is None:
            continue
        if base:
            row["speedup_vs_baseline"] = base / p50
        if row["precision"] == "fp32":
            continue
        fp32 = by_key.get((row["model"], row["format"], "fp32", row["target"])) or by_key.get(
            ("base", row["format"], "fp32", row["target"])
        )
        if fp32 and (fp32_p50 := _usable_p50(fp32["latency_ms"])):
            ratio = p50 / fp32_p50
            row["vs_fp32_same_runtime"] = 1 / ratio
            if ratio > SLOWER:
                row["notes"].append(f"{row['precision']} slower than fp32 in {row['runtime'] or row['format']}: {ratio:.2f}x")


def speedup_baseline(rows: list[dict]) -> dict | None:
    """The row speedups are relative to: the Keras fp32 model on a reference target (the GPU,
    see ``Target.is_reference``) when it was timed there, else the first row (the Keras fp32
    model on this machine's CPU)."""
    from edgekit.targets import reference_names

    references = reference_names()
    for row in rows:
        if row.get("format") == "keras" and row.get("target") in references and row.get("latency_ms"):
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
