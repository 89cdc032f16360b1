"""Benchmark every variant on every target and turn each (variant, target) into a results row."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgekit import evaluate
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
    if use_cache and (folder := cache.get("bench", key)):
        saved = json.loads((folder / "measurement.json").read_text())
        outputs = np.load(folder / "outputs.npy") if (folder / "outputs.npy").exists() else None
        cache.hit("bench", key, row_id)
        log(f"[bench] {row_id} (cached)")
        return Measurement(**saved, outputs=outputs)
    log(f"[bench] {row_id}")
    try:
        variant.ensure_session()
        measurement = target.measure(variant, spec, samples, data.x_test)
    except Exception as exc:  # noqa: BLE001
        return Measurement("failed", f"benchmark failed: {one_line(exc)}")
    if use_cache and measurement.status == "ok":
        def fill(folder):
            fields = {k: v for k, v in vars(measurement).items() if k != "outputs"}
            (folder / "measurement.json").write_text(json.dumps(fields, default=str))
            if measurement.outputs is not None:
                np.save(folder / "outputs.npy", np.asarray(measurement.outputs))
        cache.put("bench", key, row_id, fill)
    return measurement


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
    evaluated = variant.status == "ok"
    return {
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


def add_speedups(rows: list[dict]) -> None:
    """Speedup against the baseline row, and a note wherever a quantized row is slower than fp32
    of the same model in the same runtime (or of the base model, for QAT models that have no fp32)."""
    base = (speedup_baseline(rows) or {}).get("latency_ms")
    by_key = {(r["model"], r["format"], r["precision"], r["target"]): r for r in rows}
    for row in rows:
        lat = row["latency_ms"]
        if not lat:
            continue
        if base:
            row["speedup_vs_baseline"] = base["p50"] / lat["p50"]
        if row["precision"] == "fp32":
            continue
        fp32 = by_key.get((row["model"], row["format"], "fp32", row["target"])) or by_key.get(
            ("base", row["format"], "fp32", row["target"])
        )
        if fp32 and fp32["latency_ms"]:
            ratio = lat["p50"] / fp32["latency_ms"]["p50"]
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
