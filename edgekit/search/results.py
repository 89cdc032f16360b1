"""A search's results.json: every trial, the Pareto front per target, and the pick.

The file is a results file like a build's (``edgekit check``, ``report``, ``compare`` read it):
its rows are the baseline row and the pick's rows, exactly as the pick's own build wrote them, so
``edgekit build`` of the pick's recipe gives the same row ids. Everything else is under
``search``:

- ``trials``: each trial's settings, status (ok, stopped, rejected, failed), reason, recipe and
  run directory, and per target its row: metric, drop, size, memory, p50 with its 95% interval;
- ``front``: per target, the trials no other trial beats on metric drop, p50 and size at once;
- ``pick``: the trial that meets the constraints with the lowest objective on the search's
  target, the runner-up, the margin (runner-up / pick) with its 95% interval and whether it is
  significant (the interval lies above 1). The two were timed in different builds, so the
  interval combines both rows' round-to-round spread (``bench.stats.ratio_interval``, unpaired);
  it does not cover a drift of the machine between the two builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.report.results import relative_path
from edgekit.search.run import TrialRun
from edgekit.tasks import TASKS

_EPS = 1e-9


def row_memory(row: dict) -> int | None:
    """A row's memory: its profiled peak resident growth, else an mcu target's tensor arena."""
    peak = (row.get("memory") or {}).get("peak_bytes")
    return peak if peak is not None else row.get("arena_bytes")


def trial_rows(run: TrialRun, metric: str, higher: bool) -> dict[str, dict]:
    """Per target, the trial's row as the search records it."""
    out: dict[str, dict] = {}
    for row in (run.results or {}).get("rows", []):
        if row["id"].split("@")[0] != run.trial.stem:
            continue
        delta = (row.get("delta") or {}).get(metric)
        timing = row.get("timing") or {}
        out[row["target"]] = {
            "id": row["id"], "status": row["status"], "reason": row.get("reason"),
            "metric": (row.get("metrics") or {}).get(metric),
            "drop": None if delta is None else (-delta if higher else delta),
            "size_bytes": row.get("size_bytes"), "memory_bytes": row_memory(row),
            # an mcu target's arena is found exactly (16-byte steps); a peak resident growth is one noisy reading
            "memory_exact": (row.get("memory") or {}).get("peak_bytes") is None and row.get("arena_bytes") is not None,
            "latency_ms": row.get("latency_ms"),
            "p50_ci95_ms": timing.get("p50_ci95_ms"),
            "timing": {k: timing[k] for k in ("round_p50_ms", "interleaved") if k in timing},
        }
    return out


def judge(row: dict | None, spec) -> tuple[float | None, list[str]]:
    """(the row's objective value, the constraints it breaks); value None: not measured."""
    if row is None or row["status"] != "ok":
        return None, ["no ok row on the target"]
    limits, broken = spec.constraints, []
    if limits.max_metric_drop is not None and (row["drop"] is None or row["drop"] > limits.max_metric_drop + _EPS):
        broken.append(f"drop {row['drop']} > {limits.max_metric_drop:g}")
    if limits.max_size_bytes is not None and (row["size_bytes"] or 0) > limits.max_size_bytes:
        broken.append(f"size {row['size_bytes']} > {limits.max_size_bytes}")
    if limits.max_memory_bytes is not None and (row["memory_bytes"] is None or row["memory_bytes"] > limits.max_memory_bytes):
        broken.append(f"memory {row['memory_bytes']} > {limits.max_memory_bytes}")
    value = {"p50": (row.get("latency_ms") or {}).get("p50"), "size": row["size_bytes"],
             "memory": row["memory_bytes"]}[spec.objective]
    if value is None:
        broken.append(f"no {spec.objective}")
    return value, broken


def feedback(run: TrialRun, spec, metric: str, higher: bool) -> dict:
    """What a strategy learns from a trial: its objective and how far past each constraint it is."""
    limits = spec.constraints
    if run.status in ("stopped", "rejected"):
        drop = (run.prepared or run.probe or {}).get("drop")
        size = (run.prepared or {}).get("size_bytes")
        constraints = []
        if limits.max_metric_drop is not None and drop is not None:
            constraints.append(drop - limits.max_metric_drop)
        if limits.max_size_bytes is not None and size is not None:
            constraints.append(size / limits.max_size_bytes - 1)
        return {"value": None, "constraints": constraints or [1.0]}
    row = trial_rows(run, metric, higher).get(spec.target)
    value, broken = judge(row, spec)
    if value is None:
        return {"value": None, "constraints": []}
    constraints = []
    if limits.max_metric_drop is not None:
        constraints.append((row["drop"] if row["drop"] is not None else 1.0) - limits.max_metric_drop)
    if limits.max_size_bytes is not None:
        constraints.append((row["size_bytes"] or 0) / limits.max_size_bytes - 1)
    if limits.max_memory_bytes is not None:
        constraints.append((row["memory_bytes"] or limits.max_memory_bytes * 2) / limits.max_memory_bytes - 1)
    return {"value": value, "constraints": constraints}


def pareto(entries: list[dict], target: str) -> list[str]:
    """Ids of the trials whose row on ``target`` no other beats on drop, p50 and size at once."""
    points = []
    for entry in entries:
        row = entry["rows"].get(target)
        if row and row["status"] == "ok" and row["drop"] is not None and row["latency_ms"] and row["size_bytes"]:
            points.append((entry["id"], (row["drop"], row["latency_ms"]["p50"], row["size_bytes"])))
    front = []
    for trial_id, mine in points:
        dominated = any(all(o <= m for o, m in zip(other, mine)) and other != mine for _, other in points)
        if not dominated:
            front.append(trial_id)
    return front


def pick(entries: list[dict], spec) -> dict | None:
    """The trial meeting the constraints with the lowest objective on the target, the runner-up,
    and the margin between them."""
    from edgekit.bench.stats import ratio_interval

    ranked = sorted((e for e in entries if e.get("meets")),
                    key=lambda e: (e["objective"], e["rows"][spec.target]["drop"] or 0.0, e["rows"][spec.target]["size_bytes"] or 0))
    if not ranked:
        return None
    best = ranked[0]
    out: dict[str, Any] = {"trial": best["id"], "row": best["rows"][spec.target]["id"], "objective": spec.objective,
                           "value": best["objective"], "recipe": best["recipe"], "run_dir": best["run_dir"],
                           "settings": best["settings"], "runner_up": None, "margin": None, "margin_ci95": None,
                           "significant": None}
    if len(ranked) < 2:
        out["margin_note"] = "no other trial meets the constraints"
        return out
    second = ranked[1]
    out.update(runner_up=second["id"], runner_up_row=second["rows"][spec.target]["id"], runner_up_value=second["objective"])
    out["margin"] = second["objective"] / best["objective"] if best["objective"] else None
    if spec.objective == "p50":
        mine, theirs = best["rows"][spec.target], second["rows"][spec.target]
        interval = ratio_interval(theirs, mine, paired=False)
        out["margin_ci95"] = interval
        out["significant"] = bool(interval[0] > 1.0) if interval else None
        out["margin_note"] = ("runner-up p50 / pick p50, 95% interval from both rows' rounds (timed in separate "
                              "builds: unpaired)" if interval else "too few rounds for an interval")
    elif spec.objective == "size":
        out["significant"] = second["objective"] > best["objective"]
        out["margin_note"] = "sizes are exact: any margin above 1 is real"
    elif best["rows"][spec.target].get("memory_exact") and second["rows"][spec.target].get("memory_exact"):
        out["significant"] = second["objective"] > best["objective"]
        out["margin_note"] = "tensor arenas are exact: any margin above 1 is real"
    else:
        out["margin_note"] = "one memory measurement per row: no interval"
    return out


def assemble(runs: list[TrialRun], spec, recipe, out_dir: Path, strategy: str, invalid: int, seconds: float,
             environment: dict, interrupted: bool = False) -> dict:
    """The search's results.json document."""
    from edgekit import __version__

    task = TASKS[recipe.task]
    metric, higher = task.primary_metric, task.higher_is_better
    entries = []
    for run in runs:
        rows = trial_rows(run, metric, higher)
        value, broken = judge(rows.get(spec.target), spec)
        entries.append({
            "id": run.trial.id, "label": run.trial.label, "settings": run.trial.settings, "status": run.status,
            "reason": run.reason, "recipe": relative_path(run.recipe_path, out_dir),
            "run_dir": relative_path(run.run_dir, out_dir), "probe": run.probe, "prepared": run.prepared,
            "rows": rows, "objective": value if run.status == "ok" else None,
            "meets": run.status == "ok" and not broken, "breaks": broken if run.status == "ok" else [],
            "seconds": round(run.seconds, 2), "worker_seconds": round(run.worker_seconds, 2),
        })
    targets = list(dict.fromkeys(t for e in entries for t in e["rows"]))
    chosen = pick(entries, spec)
    source = next((r for r in runs if r.trial.id == (chosen or {}).get("trial")), None) \
        or next((r for r in runs if r.results), None)
    head = dict(source.results) if source else {}
    base_id = head.get("baseline", f"keras-fp32@{recipe.targets[0]}")
    rows = [r for r in head.get("rows", []) if r["id"] == base_id]
    if chosen:
        rows += [r for r in source.results["rows"] if r["id"].split("@")[0] == source.trial.stem]
    if not rows:  # nothing was timed: a placeholder baseline keeps the file a valid results file
        rows = [{"id": base_id, "model": "base", "format": "keras", "precision": "fp32", "target": recipe.targets[0],
                 "status": "skipped", "reason": "no trial of the search was timed", "metrics": {}, "delta": {}}]
    document = {key: head[key] for key in ("environment", "data", "benchmark", "targets", "model") if key in head}
    document.update({
        "edgekit_version": __version__,
        "recipe": {"name": recipe.name, "path": str(recipe.path), "sha256": recipe.sha256},
        "task": recipe.task, "primary_metric": metric, "higher_is_better": higher,
        "baseline": base_id, "rows": rows, "build_seconds": round(seconds, 1),
        "search": {
            "objective": spec.objective, "target": spec.target,
            "constraints": spec.constraints.model_dump(), "strategy": strategy,
            "space": spec.space.model_dump(mode="json"), "max_trials": spec.max_trials,
            "early_stop": spec.early_stop.model_dump() if spec.early_stop else None,
            "invalid_points": invalid, "interrupted": interrupted,
            "counts": {s: sum(1 for e in entries if e["status"] == s) for s in
                       ("ok", "stopped", "rejected", "failed", "interrupted", "pending") if any(e["status"] == s for e in entries)},
            "trials": entries,
            "front": {target: pareto(entries, target) for target in targets},
            "pick": chosen,
        },
    })
    if "environment" not in document:
        document["environment"] = environment
    return document
