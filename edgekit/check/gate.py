"""`edgekit check`: a run's results.json against the recipe's budgets and a stored baseline.

Latency is compared, by default, as a ratio measured inside one run (row p50 / the p50 of the
same model's fp32 row in the same runtime, or of the baseline row) against the same ratio in
the stored baseline, so a slower CI machine does not fail the build. It fails only when the
growth is past the budget and significant: the 95% interval of the growth, from the rounds of
both runs, lies above 1. A row whose rounds disagree (``timing.unstable``, now or stored) is
reported as ``unstable``: its numbers cannot carry a verdict, and the check does not pass on
budgets it could not judge unless ``allow_unjudged`` (``--allow-unjudged``). Absolute latency
budgets exist for pinned devices and say so. What is printed and
written lives in ``edgekit.check.output``; baseline files in ``edgekit.check.baseline``.
Nothing here imports TensorFlow or matplotlib.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.check.baseline import ensure_comparable, environment_warnings, load_baseline
from edgekit.check.budgets import Budget, CheckSpec
from edgekit.check.outcome import Outcome
from edgekit.results.metrics import higher_is_better
from edgekit.results.read import latency_problem, load_results, non_finite, value_problems

# Metric values are recomputed floats: allow rounding noise so a limit of 0 means "no worse".
_EPS = 1e-9


@dataclass
class CheckReport:
    results_path: str
    baseline_path: str | None
    budgets_from: str
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: pass a check whose only trouble is latency budgets it could not judge (``--allow-unjudged``)
    allow_unjudged: bool = False

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == "fail"]

    @property
    def passed(self) -> bool:
        """Every budget holds, and every latency budget was judged (unless ``allow_unjudged``):
        what `edgekit check` exits 0 for."""
        return not self.failures and (self.allow_unjudged or not self.unstable)

    @property
    def unstable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == "unstable"]


def compare(results: dict, spec: CheckSpec, stored: dict | None = None, allow_suspect: bool = False) -> list[Outcome]:
    """Evaluate every budget on every row; rows that vanished since the baseline fail too.

    Numbers that cannot be measurements (NaN, inf, a p50 at or below zero), a baseline id that
    names no row and a primary metric that no row has fail, in the results or the stored baseline:
    a gate that skipped them would pass on garbage. So does a suspect baseline (results.json
    ``sanity``: not above the majority class or chance of its test split), unless ``allow_suspect``.
    """
    metric = results["primary_metric"]
    higher = higher_is_better(results)
    rows = {row["id"]: row for row in results["rows"]}
    old_rows = {row["id"]: row for row in stored["rows"]} if stored else {}
    base = rows.get(results["baseline"])
    old_base = old_rows.get(stored["baseline"]) if stored else None
    outcomes = _file_outcomes(results, "results") + (_file_outcomes(stored, "stored baseline") if stored else [])
    outcomes += _sanity_outcomes(results, allow_suspect)
    # Problems every budget that reads the baseline row or the metric must fail with, not skip.
    no_base = [] if base else [f"the results have no baseline row {results['baseline']!r}"]
    no_old_base = [f"the stored baseline has no baseline row {stored['baseline']!r}"] if stored and not old_base else []
    metric_problems = [] if _metric_known(results) else [f"no ok row has the primary metric {metric!r}"]
    for row_id in [*rows, *(r for r in old_rows if r not in rows)]:
        row, old = rows.get(row_id), old_rows.get(row_id)
        outcomes.append(_status(row_id, row, old, stored is not None))
        if _ok(row) or _ok(old):
            outcomes.append(_values(row_id, row, old))
        if not _ok(row):
            continue  # nothing was measured; the status outcome says why
        budget = spec.budget_for(row_id)
        # A budget may name any metric the rows record (metric: top1_agreement); default: the primary one.
        named = budget.metric or metric
        problems = metric_problems if named == metric else _named_metric_problems(results, named)
        ctx = _Context(row_id, row, old if _ok(old) else None, base, old_base, named, stored is not None,
                       results["baseline"], budget, higher if named == metric else higher_is_better(results, named),
                       no_base, no_old_base, problems, rows, old_rows,
                       _reference_scored(results) and named == metric)
        outcomes += _metric_outcomes(ctx) + _output_outcomes(ctx) + _latency_outcomes(ctx) + _size_outcomes(ctx)
        outcomes += _device_limit_outcomes(ctx)
    return outcomes


def _named_metric_problems(results: dict, metric: str) -> list[str]:
    """Why no budget can judge ``metric``: no ok row records it (a typo, or a metric of another task)."""
    ok = [row for row in results["rows"] if _ok(row)]
    if not ok or any(metric in (row.get("metrics") or {}) for row in ok):
        return []
    seen = sorted({key for row in ok for key in (row.get("metrics") or {})})
    return [f"the budget's metric {metric!r} is recorded by no ok row (metrics there: {', '.join(seen) or 'none'}); "
            "set check metric: to one of those"]


def _reference_scored(results: dict) -> bool:
    from edgekit.tasks import TASKS

    task = TASKS.get(results.get("task"))
    return task is not None and task.scored_against == "reference"


def _ok(row: dict | None) -> bool:
    return row is not None and row["status"] == "ok"


def _metric_known(doc: dict) -> bool:
    """Whether some ok row has the primary metric (always, for `edgekit bench` files, which time
    files and measure no metric)."""
    ok = [row for row in doc["rows"] if _ok(row)]
    return doc.get("command") == "bench" or not ok or any(doc["primary_metric"] in (row.get("metrics") or {}) for row in ok)


def _file_outcomes(doc: dict, label: str) -> list[Outcome]:
    """Failures of a whole results file: a build that was interrupted, a baseline id that names
    no row, a primary metric no row has."""
    ids = [row["id"] for row in doc["rows"]]
    shown = ", ".join(ids[:8]) + (f", and {len(ids) - 8} more" if len(ids) > 8 else "")
    out = []
    if doc.get("interrupted"):
        # Its unfinished rows fail on their own status too; this line says why in one place.
        unfinished = sum(row["status"] == "interrupted" for row in doc["rows"])
        out.append(Outcome(label, "complete run", "interrupted", "finished", "fail",
                           f"{label}: the build was interrupted ({unfinished} of {len(ids)} row(s) unfinished); "
                           "run the same build again to finish it (finished stages are cached)"))
    if doc["baseline"] not in ids:
        out.append(Outcome(doc["baseline"], "baseline row", "missing", "a row", "fail",
                           f"{label}: the baseline row is {doc['baseline']!r} but no row has that id (rows: {shown}); "
                           "nothing can be compared with it. Was the file edited by hand?"))
    if not _metric_known(doc):
        seen = sorted({key for row in doc["rows"] if _ok(row) for key in (row.get("metrics") or {})})
        out.append(Outcome(label, "primary metric", doc["primary_metric"], "on an ok row", "fail",
                           f"{label}: no ok row has the primary metric {doc['primary_metric']!r} (metrics there: "
                           f"{', '.join(seen) or 'none'}); expected a results.json written by `edgekit build`"))
    return out


def _sanity_outcomes(results: dict, allow_suspect: bool) -> list[Outcome]:
    """The sanity floor of a classification build: its Keras baseline must score above the
    majority class and chance of the test split (results.json ``sanity``, written by the build)."""
    sanity = results.get("sanity")
    if not isinstance(sanity, dict) or "suspect" not in sanity:
        return []
    baseline, floor = (float("nan") if sanity.get(key) is None else sanity[key] for key in ("baseline", "floor"))
    value, limit = f"{baseline:.4f}", f"> {floor:.4f}"
    if not sanity["suspect"]:
        lo, hi = sanity.get("baseline_ci95") or [float("nan")] * 2
        return [Outcome(results["baseline"], "sanity floor", value, limit, "pass",
                        f"95% interval [{lo:.4f}-{hi:.4f}] above the majority class and chance of its test split")]
    if allow_suspect:
        return [Outcome(results["baseline"], "sanity floor", value, limit, "skip",
                        f"suspect baseline passed by --allow-suspect: {sanity.get('reason', '')}")]
    return [Outcome(results["baseline"], "sanity floor", "suspect", limit, "fail",
                    f"{sanity.get('reason') or 'the baseline is not above the majority class or chance'}; fix the build, "
                    "or pass --allow-suspect to check it anyway")]


def _values(row_id: str, row: dict | None, old: dict | None) -> Outcome:
    """The budget every measured row gets: its numbers, and its stored baseline's, can be measurements."""
    now = value_problems(row) if _ok(row) else []
    before = value_problems(old) if _ok(old) else []
    if not now and not before:
        return Outcome(row_id, "measured values", "ok", "finite", "pass")
    hints = (["rebuild it (edgekit build --fresh)"] if now else []) + (
        ["re-save the baseline from a good run (edgekit baseline save RUN_DIR PATH)"] if before else [])
    detail = "; ".join([*now, *(f"{p} in the stored baseline" for p in before)])
    return Outcome(row_id, "measured values", "invalid", "finite", "fail", f"{detail}: not a measurement; {' and '.join(hints)}")


@dataclass
class _Context:
    row_id: str
    row: dict
    old: dict | None
    base: dict | None
    old_base: dict | None
    metric: str
    have_stored: bool
    base_id: str
    budget: Budget
    higher_is_better: bool = True
    no_base: list[str] = field(default_factory=list)
    no_old_base: list[str] = field(default_factory=list)
    metric_problems: list[str] = field(default_factory=list)
    rows: dict = field(default_factory=dict)
    old_rows: dict = field(default_factory=dict)
    #: every row is scored against the baseline row's own outputs (task fidelity)
    reference_scored: bool = False

    def limit(self, key: str):
        return getattr(self.budget, key)


def _judge(ctx: _Context, name: str, value: float | None, limit: float, fmt, detail: str = "", why_skip: str = "",
           problems: list[str] = ()) -> Outcome:
    """Pass or fail ``value`` against ``limit``; skip when it was not measured.

    ``problems`` (a NaN input, a missing baseline row) fail the budget whatever the value: NaN
    compares False with every limit, so ``value > limit`` alone would let it pass.
    """
    why = None if value is None else non_finite(value)
    if problems or why:
        shown = "-" if value is None else why or fmt(value)
        return Outcome(ctx.row_id, name, shown, fmt(limit), "fail", "; ".join(problems or [f"{name} is {why}"]))
    if value is None:
        return Outcome(ctx.row_id, name, "-", fmt(limit), "skip", why_skip)
    return Outcome(ctx.row_id, name, fmt(value), fmt(limit), "fail" if value > limit + _EPS else "pass", detail, compared=True)


def _safe(compute) -> float | None:
    """``compute()``, or None where the arithmetic itself fails (a zero p50, an integer too large)."""
    try:
        return compute()
    except ArithmeticError:
        return None


def _status(row_id: str, row: dict | None, old: dict | None, have_stored: bool) -> Outcome:
    was_ok = old is not None and old["status"] == "ok"
    was = f"was {old['status']}" if old else ("new row, not in the baseline" if have_stored else "")
    if row is None:
        return Outcome(row_id, "status", "missing", "ok", "fail" if was_ok else "skip",
                       f"in the baseline ({old['status']}) but not in the results")
    if row["status"] == "ok":
        return Outcome(row_id, "status", "ok", "ok", "pass", was if not old else "")
    detail = f"{row.get('reason') or row['status']}" + (f" ({was})" if was else "")
    if row["status"] == "skipped" and not was_ok:
        return Outcome(row_id, "status", "skipped", "ok", "skip", detail)
    if row["status"] == "failed" and old is not None and not was_ok:
        return Outcome(row_id, "status", "failed", "ok", "skip", f"known failure: {detail}")
    return Outcome(row_id, "status", row["status"], "ok", "fail", detail)


def _bad(name: str, value: float | None, where: str, latency: bool = False) -> list[str]:
    """``["accuracy is NaN on the baseline row"]`` when ``value`` cannot be a measurement, else []."""
    if value is None:
        return []
    why = latency_problem("p50", value) if latency else non_finite(value)
    return [f"{name} is {why} {where}"] if why else []


def _metric_outcomes(ctx: _Context) -> list[Outcome]:
    out = []
    for key, floor in (("min_metric", True), ("max_metric", False)):
        if (limit := ctx.limit(key)) is not None:
            out.append(_bound(ctx, limit, floor))
    if ctx.row_id != ctx.base_id and ctx.reference_scored and not ctx.budget.is_explicit("max_metric_drop"):
        if ctx.limit("min_metric") is None and ctx.limit("max_metric") is None:  # else: judged by those
            out.append(Outcome(ctx.row_id, f"{ctx.metric} drop vs {ctx.base_id}", "-", "-", "skip",
                               f"{ctx.base_id} is the reference every row is scored against ({ctx.metric} at its cap): "
                               "the default drop budget does not apply; set check min_metric (e.g. 30) or max_metric_drop"))
    elif ctx.row_id != ctx.base_id and (limit := ctx.limit("max_metric_drop")) is not None:
        out.append(_drop(ctx, f"{ctx.metric} drop vs {ctx.base_id}", limit, ctx.base, f"on the baseline row {ctx.base_id}",
                         ctx.no_base, "no metric on this row or the baseline row"))
    if ctx.have_stored and (limit := ctx.limit("max_metric_drop_vs_stored")) is not None:
        out.append(_drop(ctx, f"{ctx.metric} drop vs stored", limit, ctx.old, "in the stored baseline", [],
                         "not measured in the stored baseline"))
    return out


def _output_outcomes(ctx: _Context) -> list[Outcome]:
    """The budgets on single outputs (``outputs: {name: {...}}``), each on that output's own primary
    metric and direction, read from the rows' ``outputs.<name>``; a row without the output fails them."""
    import dataclasses

    from edgekit.tasks import TASKS

    out = []
    for name, budget in (ctx.budget.outputs or {}).items():
        record = (ctx.row.get("outputs") or {}).get(name)
        if record is None:
            known = ", ".join(ctx.row.get("outputs") or {}) or "none: the model has one output"
            out.append(Outcome(ctx.row_id, f"output {name}", "-", "-", "fail",
                               f"the row has no output {name!r} (its outputs: {known}); fix check outputs"))
            continue
        metric = record.get("primary_metric")
        task = TASKS.get(record.get("task"))

        def view(row, name=name):
            return {"metrics": (((row or {}).get("outputs") or {}).get(name) or {}).get("metrics") or {}} if row else None

        sub = dataclasses.replace(ctx, row=view(ctx.row), base=view(ctx.base), old=view(ctx.old), metric=metric,
                                  higher_is_better=task.higher_is_better if task else True, reference_scored=False,
                                  metric_problems=[])
        found = []
        for key, floor in (("min_metric", True), ("max_metric", False)):
            if (limit := getattr(budget, key)) is not None:
                found.append(_bound(sub, limit, floor))
        if ctx.row_id != ctx.base_id and budget.max_metric_drop is not None:
            found.append(_drop(sub, f"{metric} drop vs {ctx.base_id}", budget.max_metric_drop, sub.base,
                               f"on the baseline row {ctx.base_id}", ctx.no_base, "no metric on this row or the baseline row"))
        if ctx.have_stored and budget.max_metric_drop_vs_stored is not None:
            found.append(_drop(sub, f"{metric} drop vs stored", budget.max_metric_drop_vs_stored, sub.old,
                               "in the stored baseline", [], "not measured in the stored baseline"))
        out += [dataclasses.replace(o, budget=f"output {name} {o.budget}") for o in found]
    return out


def _drop(ctx: _Context, name: str, limit: float, ref_row: dict | None, ref_where: str, missing: list[str],
          why_skip: str) -> Outcome:
    """The task metric's drop from ``ref_row`` (``ref_where`` says which row that is) to this row."""
    # A drop is a loss of quality: reference minus row, or row minus reference for errors.
    sign = 1 if ctx.higher_is_better else -1
    value = (ctx.row.get("metrics") or {}).get(ctx.metric)
    ref = ((ref_row or {}).get("metrics") or {}).get(ctx.metric)
    problems = ctx.metric_problems + missing + _bad(ctx.metric, value, "on this row") + _bad(ctx.metric, ref, ref_where)
    drop = _safe(lambda: sign * (ref - value)) if None not in (ref, value) else None
    stored = " stored" if ref_row is ctx.old else ""
    detail = f"{value:.4f} vs {ref:.4f}{stored}" if drop is not None and not problems else ""
    return _judge(ctx, name, drop, limit, "{:.4f}".format, detail, why_skip, problems)


def _bound(ctx: _Context, limit: float, floor: bool) -> Outcome:
    """The row's primary metric against an absolute floor (min_metric) or ceiling (max_metric)."""
    name = f"{ctx.metric} {'min' if floor else 'max'}"
    value = (ctx.row.get("metrics") or {}).get(ctx.metric)
    problems = ctx.metric_problems + _bad(ctx.metric, value, "on this row")
    if problems or value is None:
        return _judge(ctx, name, value, limit, "{:.4f}".format, "", "no metric on this row", problems)
    failed = value < limit - _EPS if floor else value > limit + _EPS
    return Outcome(ctx.row_id, name, f"{value:.4f}", f"{limit:.4f}", "fail" if failed else "pass", "", compared=True,
                   fails_if="<" if floor else ">")


def _p50(row: dict | None) -> float | None:
    lat = (row or {}).get("latency_ms")
    return lat.get("p50") if lat else None


def _reference_id(ctx: _Context) -> str | None:
    """The row whose p50 the row's is divided by. latency_reference fp32 (the default): the
    same model's fp32 row in the same runtime and target, for a compressed model's fp32 row the
    base model's (QAT models, which have no fp32 row, also use the base model's); None for the
    base model's fp32 rows, which have no sibling to be timed against. latency_reference
    baseline: the run's baseline row."""
    row = ctx.row
    if ctx.budget.latency_reference == "baseline":
        return ctx.base_id
    if row.get("format") == "keras":
        return None
    own = [] if row.get("precision") == "fp32" else [row.get("model")]
    for model in (*own, "base"):
        for rid, other in ctx.rows.items():
            if rid != ctx.row_id and (other.get("model"), other.get("format"), other.get("precision"),
                                      other.get("target")) == (model, row.get("format"), "fp32", row.get("target")):
                return rid
    return None


def _disagreement(row: dict) -> str:
    """How a row's rounds disagree: their robust spread, and their range where it was recorded
    (two speeds can hide under a small robust spread: ``stats.summarize_rounds``)."""
    timing = row.get("timing") or {}
    shown = f"its rounds disagree by {timing.get('robust_spread', timing.get('spread', 0.0)):.0%}"
    return shown + (f", range {timing['range_ratio']:.2f}x" if isinstance(timing.get("range_ratio"), (int, float)) else "")


def _ratio_regression(ctx: _Context, limit: float) -> Outcome:
    """The in-run latency ratio now against the stored one, judged with its interval."""
    from edgekit.bench.stats import log_ratio_se, t975
    from edgekit.report.rows import paired

    ref_id = _reference_id(ctx)
    name = "latency ratio regression vs stored"
    if ref_id is None:
        # The Keras row is the one reference left, and on a CPU its latency moves between runs
        # by up to 1.7x here (TensorFlow's thread hand-offs), which no interval of one run sees.
        return Outcome(ctx.row_id, name, "-", "{:.3f}x".format(limit), "skip",
                       "no fp32 sibling in the same runtime to be timed against; set latency_reference: baseline "
                       "to judge it against the baseline row, or an absolute budget on a pinned device")
    ref, old_ref = ctx.rows.get(ref_id), ctx.old_rows.get(ref_id)
    now, old, ref_now, ref_old = _p50(ctx.row), _p50(ctx.old), _p50(ref), _p50(old_ref)
    missing = [] if ref_id != ctx.base_id else ctx.no_base + ctx.no_old_base
    problems = (missing + _bad("p50", now, "on this row", latency=True) + _bad("p50", old, "in the stored baseline", latency=True)
                + _bad("p50", ref_now, f"on the reference row {ref_id}", latency=True)
                + _bad("p50", ref_old, f"on the reference row {ref_id} in the stored baseline", latency=True))
    fmt = "{:.3f}x".format
    value = _safe(lambda: (now / ref_now) / (old / ref_old)) if None not in (now, old, ref_now, ref_old) else None
    if problems or value is None:
        return _judge(ctx, name, value, limit, fmt, "", "no latency for this row or its reference row, now or stored",
                      problems)
    shaky = [f"{where} ({_disagreement(r)})"
             for where, r in ((f"{ctx.row_id} now", ctx.row), (f"{ctx.row_id} stored", ctx.old),
                              (f"{ref_id} now", ref), (f"{ref_id} stored", old_ref)) if (r.get("timing") or {}).get("unstable")]
    if shaky:
        return Outcome(ctx.row_id, name, fmt(value), fmt(limit), "unstable",
                       f"not judged: unstable timing in {', '.join(shaky)}; time it again on a quieter machine "
                       "(edgekit build --retime)")
    se_now = log_ratio_se(ctx.row, ref, paired(ctx.row, ref))
    se_old = log_ratio_se(ctx.old, old_ref, paired(ctx.old, old_ref))
    speedups = f"vs {ref_id}: its p50 / row p50 {ref_now / now:.3g}x now, {ref_old / old:.3g}x stored"
    if se_now is None or se_old is None:
        return _judge(ctx, name, value, limit, fmt, f"{speedups}; no rounds to give an interval: judged on the point")
    half = t975(min(se_now[1], se_old[1])) * math.hypot(se_now[0], se_old[0])
    lo, hi = value * math.exp(-half), value * math.exp(half)
    detail = f"{speedups}; growth 95% interval [{lo:.3f}-{hi:.3f}]"
    if value > limit + _EPS and lo <= 1:
        return Outcome(ctx.row_id, name, fmt(value), fmt(limit), "pass",
                       f"{detail}: past the limit but not significant (the interval holds 1)", compared=True)
    return _judge(ctx, name, value, limit, fmt, detail)


def _latency_outcomes(ctx: _Context) -> list[Outcome]:
    out, now, old = [], _p50(ctx.row), _p50(ctx.old)
    ratio_fmt = "{:.3f}x".format
    mine = _bad("p50", now, "on this row", latency=True)
    mine_old = _bad("p50", old, "in the stored baseline", latency=True)
    if ctx.row_id != ctx.base_id and ctx.have_stored and (limit := ctx.limit("max_latency_ratio_regression")) is not None:
        out.append(_ratio_regression(ctx, limit))
    if (limit := ctx.limit("max_latency_ms_abs")) is not None:
        out.append(_judge(ctx, "p50 latency ms (absolute)", now, limit, "{:.4g}".format,
                          "absolute: meaningful on a pinned device only", "no latency", mine))
    if ctx.have_stored and (limit := ctx.limit("max_latency_abs_regression")) is not None:
        value = _safe(lambda: now / old) if None not in (now, old) else None
        problems = mine + mine_old
        detail = f"{now:.4g} ms vs {old:.4g} ms stored; absolute: same pinned device only" if value and not problems else ""
        out.append(_judge(ctx, "p50 latency regression vs stored (absolute)", value, limit, ratio_fmt, detail,
                          "no latency now or stored", problems))
    return out


def _size_outcomes(ctx: _Context) -> list[Outcome]:
    if (limit := ctx.limit("max_size_bytes")) is None:
        return []
    size = ctx.row.get("size_bytes")
    problems = [f"size_bytes is {size} (expected >= 0)"] if size is not None and size < 0 else []
    return [_judge(ctx, "size bytes", size, limit, "{:d}".format, "", "no artifact size", problems)]


def _device_limit_outcomes(ctx: _Context) -> list[Outcome]:
    """The memory limits the row's target measured it against (``memory_limits``: an mcu
    profile's RAM for the tensor arena + margin, its flash for the model; an ethos-u profile's
    SRAM and flash for Vela's compiled model), one outcome each."""
    if not ctx.limit("device_limits"):
        return []
    out = []
    for entry in ctx.row.get("memory_limits") or []:
        value, limit = entry.get("value"), entry.get("limit")
        name = f"{entry.get('budget', 'memory')} bytes on {ctx.row.get('target')}"
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            out.append(Outcome(ctx.row_id, name, str(value), str(limit), "fail",
                               f"{name}: the limit {limit!r} is no byte count; was results.json edited by hand?"))
            continue
        problems = [] if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else [
            f"{name} is {value!r} (expected a byte count >= 0)"]
        out.append(_judge(ctx, name, value if not problems else None, limit, "{:d}".format, entry.get("what", ""),
                          problems=problems))
    return out


def load_spec(recipe_path: Path | None, results_path: Path) -> tuple[CheckSpec, str]:
    """The budgets: --recipe, else the recipe.yaml copy in the run directory, else the defaults."""
    from edgekit.recipe.schema import load_recipe

    if recipe_path is None:
        run_dir = results_path if results_path.is_dir() else results_path.parent
        if not (run_dir / "recipe.yaml").is_file():
            return CheckSpec(), "default budgets (no --recipe and no recipe.yaml beside the results)"
        recipe_path = run_dir / "recipe.yaml"
    return load_recipe(recipe_path).check, f"{recipe_path} (its check: section; defaults where it sets none)"


def run_check(results_path: Path, baseline_path: Path | None = None, recipe_path: Path | None = None,
              history: str | None = None, window: int = 10, allow_suspect: bool = False,
              allow_unjudged: bool = False) -> CheckReport:
    """Load everything, evaluate every budget, and collect warnings; raises InputError on bad input.
    With ``history`` (a results store), every row is also judged against its last ``window``
    runs there (``edgekit.history.window``). ``allow_suspect``: a suspect baseline (results.json
    ``sanity``) is reported, not failed. ``allow_unjudged``: latency budgets that unstable
    timing left unjudged do not stop the report from passing."""
    results = load_results(results_path)
    spec, source = load_spec(recipe_path, Path(results_path))
    stored = None
    if baseline_path is not None:
        stored = load_baseline(baseline_path)
        ensure_comparable(results, stored, baseline_path)
    report = CheckReport(str(results_path), str(baseline_path) if baseline_path else None, source,
                         allow_unjudged=allow_unjudged)
    report.outcomes = compare(results, spec, stored, allow_suspect)
    if history is not None:
        from edgekit.history import store
        from edgekit.history import window as history_window

        report.outcomes += history_window.outcomes(store.open_store(history), results, spec, window)
    if isinstance(results.get("search"), dict) and not results["search"].get("pick"):
        report.outcomes.append(Outcome("search", "pick", "none", "a trial within the constraints", "fail",
                                       "no trial of the search met its constraints (see its report.md)"))
    report.warnings += [f'rule rows "{p}" matches no row (rows: {", ".join(r["id"] for r in results["rows"])})'
                        for p in spec.unmatched_rules([r["id"] for r in results["rows"]])]
    if stored is None and history is None:
        report.warnings.append("no --baseline: only in-run budgets were checked (metric drop vs the baseline row, "
                               "size, absolute latency); pass --baseline or --history to check regressions")
    elif stored is not None:
        absolute = any("absolute" in o.budget and o.result != "skip" for o in report.outcomes)
        report.warnings += environment_warnings(results, stored, absolute)
    return report
