"""The bench stage: time every variant on every target that supports it, one results row per
(variant, target); measurements are cached per artifact, target and benchmark settings."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgekit import interrupts
from edgekit.errors import one_line
from edgekit.evaluate import scores
from edgekit.evaluate.stage import score
from edgekit.evaluate.variant import Variant
from edgekit.progress import step
from edgekit.report.rows import add_speedups, drop_impossible_values, make_row


def benchmark(variants: list[Variant], data, recipe, log, baseline_outputs=None, cache=None,
              rows: list | None = None, latencies: dict | None = None) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Time each variant on each target that supports it, appending one row per pair to ``rows``
    as it is measured (so an interrupted build keeps what it finished); returns the raw
    latencies and each target's environment block. ``baseline_outputs`` (the Keras model's test
    outputs) are the reference of parity for rows whose outputs a target produced itself.
    Measurements come from ``cache`` when the artifact, target and benchmark settings are unchanged."""
    from edgekit.targets import Measurement, in_order, resolve, search_dirs

    spec = recipe.benchmark
    samples = list(data.x_test[: spec.inputs])
    rows = [] if rows is None else rows
    latencies = {} if latencies is None else latencies
    baseline = variants[0]
    # cpu, then gpu, then devices: the first row stays the Keras fp32 baseline on this machine.
    targets = in_order(resolve(recipe.targets, search_dirs(recipe.path), log))
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
            if (reasons := drop_impossible_values(row)) and row["status"] == "ok":
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
                   inputs=fingerprint(*samples, data.x_test), code=_timing_code(target, variant)) if use_cache else None
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


def _timing_code(target, variant) -> str:
    """Hash of the code that times ``variant`` on ``target``: its runtime session (the format
    table's, or the open session's for the Keras baseline), the timing loop, the target kind."""
    from edgekit.bench.stats import time_session
    from edgekit.cache import source_hash
    from edgekit.formats import FORMATS

    fmt = FORMATS.get(variant.format)
    runtime = fmt.runtime_module if fmt else type(variant.session).__module__
    return source_hash(runtime, "edgekit.runtimes", time_session.__module__, type(target).__module__)


def _time(target, row_id, variant, spec, samples, data, log):
    """Time ``variant`` on ``target``; a failure is a failed measurement, never an exception."""
    from edgekit.targets import Measurement

    log(f"[bench] {row_id}")
    try:
        variant.ensure_session()
        return target.measure(variant, spec, samples, data.x_test)
    except Exception as exc:  # noqa: BLE001
        interrupts.reraise_if_interrupted()  # Ctrl-C that a library turned into an error
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
    return {"metrics": metrics, "delta": scores.delta(metrics, baseline.metrics), "parity": parity}
