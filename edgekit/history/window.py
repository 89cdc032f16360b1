"""`edgekit check --history URL --window N`: a run's rows against the last N runs of the same row.

One stored baseline is one run: its own noise decides whether the next run looks slower. Here
each row is judged against a window of its earlier runs in the history (same recipe name, row id
and target, timed on the same machine or device: ``store.environment_key``; each measurement
once, as a cached rebuild records the same one again), the way ``edgekit.bench.stats`` judges
everything else: on the log scale, with Student's t. The growth is ``p50 now / the window's
geometric mean p50``; its 95% interval is ``growth x/ exp(t(N-1) * sqrt(s^2 (1 + 1/N) + se^2))``,
with ``s`` the spread of the window's log p50s (how much runs of this row differ from run to run
on this machine) and ``se`` that of the new run's own rounds. The row fails
``max_latency_regression_vs_history`` only when the growth is past the limit and the whole
interval lies above 1. The task metric is judged against the window's median with
``max_metric_drop_vs_stored``. A window of fewer than ``MIN_RUNS`` runs judges nothing (skip):
its spread cannot be estimated.
"""

from __future__ import annotations

import math
import statistics

from edgekit.check.outcome import Outcome
from edgekit.history.store import environment_key
from edgekit.results.metrics import higher_is_better

#: the fewest earlier runs a window needs to judge (its spread needs two; three give t a chance)
MIN_RUNS = 3


def earlier_runs(store, results: dict, row: dict, window: int) -> list[dict]:
    """The last ``window`` distinct ok measurements of ``row`` in ``store`` before its own."""
    key, _ = environment_key(results, row)
    mine = float(row.get("measured_at") or results.get("finished_at") or math.inf)
    seen, runs = set(), []
    for stored in store.series(results["recipe"]["name"], row["id"], row.get("target"), key):
        at = stored["measured_at"]
        if stored["status"] != "ok" or stored["p50_ms"] is None or at >= mine - 1e-6 or at in seen:
            continue  # not measured, the new run itself (or later), or a cached measurement recorded again
        seen.add(at)
        runs.append(stored)
    return runs[-window:]


def outcomes(store, results: dict, spec, window: int) -> list[Outcome]:
    """The window outcomes of every ok row of ``results`` (a latency and a metric one each)."""
    out = []
    for row in results["rows"]:
        if row.get("status") != "ok":
            continue
        runs = earlier_runs(store, results, row, window)
        budget = spec.budget_for(row["id"])
        if (limit := budget.max_latency_regression_vs_history) is not None and (row.get("latency_ms") or {}).get("p50"):
            out.append(_latency(row, runs, limit, window))
        if (limit := budget.max_metric_drop_vs_stored) is not None:
            out.append(_metric(row, runs, limit, results))
    return out


def _span(runs: list[dict]) -> str:
    import datetime

    def day(t):
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")

    return f"{len(runs)} run(s) from {day(runs[0]['measured_at'])} to {day(runs[-1]['measured_at'])} UTC"


def _latency(row: dict, runs: list[dict], limit: float, window: int) -> Outcome:
    from edgekit.bench.stats import t975

    name = f"latency vs history (last {window})"
    fmt = "{:.3f}x".format
    if len(runs) < MIN_RUNS:
        return Outcome(row["id"], name, "-", fmt(limit), "skip",
                       f"{len(runs)} earlier run(s) of this row on this machine in the history; the window needs "
                       f"{MIN_RUNS} to know its run-to-run spread")
    now = row["latency_ms"]["p50"]
    logs = [math.log(r["p50_ms"]) for r in runs]
    mean, spread = statistics.fmean(logs), statistics.stdev(logs)
    rounds = [p for p in (row.get("timing") or {}).get("round_p50_ms") or [] if p > 0]
    own = statistics.stdev(math.log(p) for p in rounds) / math.sqrt(len(rounds)) if len(rounds) >= 2 else 0.0
    growth = now / math.exp(mean)
    half = t975(len(runs) - 1) * math.sqrt(spread ** 2 * (1 + 1 / len(runs)) + own ** 2)
    lo, hi = growth * math.exp(-half), growth * math.exp(half)
    detail = (f"p50 {now:.4g} ms vs {math.exp(mean):.4g} ms (geometric mean of {_span(runs)}, run-to-run spread "
              f"{spread:.1%}); growth 95% interval [{lo:.3f}-{hi:.3f}]")
    if (row.get("timing") or {}).get("unstable"):
        return Outcome(row["id"], name, fmt(growth), fmt(limit), "unstable",
                       f"not judged: this run's rounds disagree; {detail}")
    if growth > limit and lo <= 1:
        return Outcome(row["id"], name, fmt(growth), fmt(limit), "pass",
                       f"{detail}: past the limit but not significant (the interval holds 1)", compared=True)
    return Outcome(row["id"], name, fmt(growth), fmt(limit), "fail" if growth > limit else "pass", detail, compared=True)


def _metric(row: dict, runs: list[dict], limit: float, results: dict) -> Outcome:
    metric = results["primary_metric"]
    name = f"{metric} drop vs history"
    values = [r["metric_value"] for r in runs if r["metric_value"] is not None]
    now = (row.get("metrics") or {}).get(metric)
    if not values or now is None:
        return Outcome(row["id"], name, "-", f"{limit:.4f}", "skip", "no earlier run with this metric in the history")
    middle = statistics.median(values)
    drop = (middle - now) if higher_is_better(results) else (now - middle)
    return Outcome(row["id"], name, f"{drop:.4f}", f"{limit:.4f}", "fail" if drop > limit + 1e-9 else "pass",
                   f"{now:.4f} vs the median {middle:.4f} of {len(values)} earlier run(s)", compared=True)
