"""Benchmark every variant on every target and turn each (variant, target) into a results row."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgekit import evaluate
from edgekit.baseline import latency_problem, non_finite
from edgekit.bench import summarize
from edgekit.progress import step
from edgekit.variants import Variant, one_line, score

#: A quantized row is called slower than fp32 past this p50 ratio; closer than 5% is timing noise
#: on a shared machine (two runs of the same file differ by that much).
SLOWER = 1.05


def benchmark(variants: list[Variant], data, recipe, log, baseline_outputs=None, cache=None,
              rows: list | None = None, latencies: dict | None = None) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Time each variant on each target that supports it, appending one row per pair to ``rows``
    as it is measured (so an interrupted build keeps what it finished); returns the raw
    latencies and each target's environment block. ``baseline_outputs`` (the Keras model's test
    outputs) are the reference of parity for rows whose outputs a target produced itself.
    Measurements come from ``cache`` when the artifact, target and benchmark settings are unchanged."""
    from edgekit import devices
    from edgekit.targets import Measurement, resolve

    spec = recipe.benchmark
    samples = list(data.x_test[: spec.inputs])
    rows = [] if rows is None else rows
    latencies = {} if latencies is None else latencies
    baseline = variants[0]
    # cpu, then gpu, then devices: the first row stays the Keras fp32 baseline on this machine.
    names = sorted(recipe.targets, key=lambda n: ("cpu", "gpu").index(n) if n in ("cpu", "gpu") else 2)
    targets = resolve(names, devices.search_dirs(recipe.path), log)
    pairs = [(name, target, v) for name, target in targets.items() for v in variants if target.supports(v)]
    for done, (target_name, target, variant) in enumerate(pairs):
        step(log, "benchmarking", done, len(pairs))
        row_id = f"{variant.stem}@{target_name}"
        if variant.status != "ok":
            measurement = Measurement(variant.status, variant.reason)
        else:
            measurement = _measure(target, target_name, variant, spec, samples, data, cache, log, row_id)
        if measurement.latencies_ms:
            latencies[row_id] = measurement.latencies_ms
        row = make_row(row_id, variant, target_name, measurement, baseline)
        if getattr(target, "evaluates", False):  # metrics from this target's own outputs, never the host's
            row.update(target_evaluation(measurement.outputs, data, baseline, baseline_outputs, recipe.task))
            if (reasons := _drop_impossible_values(row)) and row["status"] == "ok":
                row.update(status="failed", reason="; ".join(reasons))
        rows.append(row)
    add_speedups(rows)
    return latencies, {name: target.environment() for name, target in targets.items()}


def _measure(target, target_name, variant, spec, samples, data, cache, log, row_id):
    """One measurement, from the cache when the same artifact was timed the same way on the same
    target (this machine's CPU, or the same device profile)."""
    from edgekit.cache import fingerprint, make_key
    from edgekit.environment import cpu_info
    from edgekit.targets import Measurement

    use_cache = cache is not None and variant.key is not None
    profile = getattr(target, "profile", None)
    where = profile.model_dump(mode="json") if hasattr(profile, "model_dump") else cpu_info()
    key = make_key("bench", subject=variant.key, target=target_name, where=where, spec=spec.model_dump(),
                   inputs=fingerprint(*samples, data.x_test)) if use_cache else None
    if not use_cache:
        return _time(target, row_id, variant, spec, samples, data, log)

    def load(folder):
        saved = json.loads((folder / "measurement.json").read_text())
        outputs = np.load(folder / "outputs.npy") if (folder / "outputs.npy").exists() else None
        measurement = Measurement(**saved, outputs=outputs)
        _check_measurement(measurement)
        return measurement

    def store(measurement, folder):
        fields = {k: v for k, v in vars(measurement).items() if k != "outputs"}
        (folder / "measurement.json").write_text(json.dumps(fields, default=str))
        if measurement.outputs is not None:
            np.save(folder / "outputs.npy", np.asarray(measurement.outputs))

    measurement, reused = cache.fetch("bench", key, row_id, load=load, store=store, keep=lambda m: m.status == "ok",
                                      compute=lambda: _time(target, row_id, variant, spec, samples, data, log))
    if reused:
        log(f"[bench] {row_id} (cached)")
    return measurement


def _time(target, row_id, variant, spec, samples, data, log):
    """Time ``variant`` on ``target``; a failure is a failed measurement, never an exception."""
    from edgekit.targets import Measurement

    log(f"[bench] {row_id}")
    try:
        variant.ensure_session()
        return target.measure(variant, spec, samples, data.x_test)
    except Exception as exc:  # noqa: BLE001
        return Measurement("failed", f"benchmark failed: {one_line(exc)}")


def _check_measurement(m) -> None:
    """A cached measurement must be one a benchmark could have produced (the checksum catches
    a damaged file; this catches one that was written wrong)."""
    times = np.asarray(m.latencies_ms or [], dtype=float)
    if m.status != "ok" or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError("measurement.json holds a status or latencies no benchmark produces")


def target_evaluation(outputs, data, baseline: Variant, baseline_outputs, task: str) -> dict[str, Any]:
    """Metrics, delta and parity of the test-split outputs a target produced itself (empty
    when it produced none: a failed or skipped row has no metrics of its own)."""
    if outputs is None:
        return {"metrics": {}, "delta": {}, "parity": {}}
    if baseline_outputs is None:
        baseline_outputs = baseline.session.predict(data.x_test)
    metrics, parity = score(outputs, data, baseline_outputs, task)
    return {"metrics": metrics, "delta": evaluate.delta(metrics, baseline.metrics), "parity": parity}


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
        "delta": evaluate.delta(variant.metrics, baseline.metrics) if evaluated else {},
        "parity": variant.parity if evaluated else {},
        "latency_ms": summarize(m.latencies_ms) if m.status == "ok" and m.latencies_ms else None,
        "speedup_vs_baseline": None,
        "runtime": m.runtime or variant.runtime,
        "settings": {**variant.settings, **(m.settings or {})},
        "notes": [],
    }
    reasons = _drop_impossible_values(row)
    if reasons and row["status"] == "ok":
        row.update(status="failed", reason="; ".join(reasons))
    return row


def _drop_impossible_values(row: dict[str, Any]) -> list[str]:
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
    """The row speedups are relative to: the Keras fp32 model on the GPU when it was timed
    there, else the first row (the Keras fp32 model on this machine's CPU)."""
    for row in rows:
        if row.get("format") == "keras" and row.get("target") == "gpu" and row.get("latency_ms"):
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
