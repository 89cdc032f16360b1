"""Flags on a build's rows that no budget has to ask for: a ``loss`` note on a row much worse than
the baseline row, and the ``suspect`` mark of a baseline at its test split's sanity floor
(``edgekit.evaluate.sanity``); and the lines that count them under the table.

A loss flag is a note, not a failure: the recipe's budgets (``check:``) still decide exit codes.
Without it an OpenVINO int8 row at MAE 14.1 against the baseline's 9.6, or pruned rows at 0.485
against 0.960, read ``ok`` in a recipe with no budget.
"""

from __future__ import annotations

from typing import Any

#: what each kind of metric may lose before its row is flagged (recipe: check.loss_tolerance):
#: higher-is-better scores in [0, 1] (accuracy, roc_auc, mean_iou, top1_agreement): 1 point,
#: absolute; error metrics (mae, rmse, mse: lower is better): 5% of the baseline's, relative;
#: snr_db (scored against the reference itself, whose own SNR is the cap): a floor of 20 dB
SCORE_POINTS = 0.01
ERROR_RELATIVE = 0.05
SNR_FLOOR_DB = 20.0
_EPS = 1e-9


def default_tolerance(metric: str, higher: bool) -> float:
    """The default tolerance of ``metric`` (see the module constants)."""
    if metric == "snr_db":
        return SNR_FLOOR_DB
    return SCORE_POINTS if higher else ERROR_RELATIVE


def _describe_tolerance(metric: str, higher: bool, tolerance: float) -> str:
    if metric == "snr_db":
        return f"below {tolerance:g} dB"
    return f"past {tolerance:.0%}" if not higher else f"past {tolerance * 100:g} point(s)"


def loss_of(metric: str, value: float, reference: float, higher: bool, tolerance: float) -> str | None:
    """How ``value`` is worse than ``reference`` past ``tolerance`` ("-0.4750", "+47%",
    "14.2 dB"), or None when it is not."""
    if metric == "snr_db":
        return f"{value:.1f} dB" if value < tolerance - _EPS else None
    if higher:
        return f"{value - reference:+.4f}" if reference - value > tolerance + _EPS else None
    if reference > 0 and value > reference * (1 + tolerance) + _EPS:
        return f"{value / reference - 1:+.0%}"
    return None


#: error metrics (lower is better) an output of its own may be scored with (regression heads)
ERROR_METRICS = frozenset({"mae", "rmse", "mse"})


def flag_losses(rows: list[dict], primary_metric: str, higher: bool, overrides: dict[str, float | None] | None = None,
                extra_metrics: tuple[str, ...] = ("top1_agreement",)) -> dict[str, Any] | None:
    """Add a ``loss`` field and a note to every ok row (the first, the baseline, excepted)
    whose primary metric, or one of ``extra_metrics`` it records (a label-free classifier's
    top-1 agreement), is worse than the baseline row's past its tolerance; and, for a model of
    several outputs, a note per output other than the row's headline whose own primary metric
    (or top-1 agreement) is worse than the baseline row's same output (a regression head that
    int8 broke behind a classification headline).

    Args:
        rows: the results rows, the baseline first.
        primary_metric: the task's metric; ``higher``: which way it is better.
        overrides: ``{metric: tolerance}`` from the recipe (``check.loss_tolerance``); None
            turns a metric's flag off.

    Returns:
        results.json ``loss_flags``: the tolerances applied and the flagged row ids; None when
        there is no baseline metric to compare with.
    """
    if not rows:
        return None
    overrides = overrides or {}
    base = rows[0]
    applied: dict[str, float] = {}

    def tolerance(metric: str, up: bool, reference: dict) -> float | None:
        value = overrides.get(metric, default_tolerance(metric, up))
        if value is None or metric not in reference:
            return None
        applied[metric] = value
        return value

    row_metrics = [(primary_metric, higher)] + [(m, True) for m in extra_metrics if m != primary_metric]
    for metric, up in row_metrics:
        tolerance(metric, up, base.get("metrics") or {})
    if not applied:
        return None
    flagged = []
    for row in rows[1:]:
        if row.get("status") != "ok":
            continue
        notes = _losses(row.get("metrics") or {}, base.get("metrics") or {}, row_metrics, tolerance, base["id"])
        for name, record in (row.get("outputs") or {}).items():
            reference = (base.get("outputs") or {}).get(name) or {}
            if record.get("headline") or not reference.get("metrics"):
                continue  # the headline output is the row's own metrics, flagged above
            metric = record.get("primary_metric")
            wanted = [(metric, metric not in ERROR_METRICS)] + [(m, True) for m in extra_metrics if m != metric]
            notes += [(f"output {name} {what}", {**loss, "output": name}) for what, loss in
                      _losses(record.get("metrics") or {}, reference["metrics"], wanted, tolerance, base["id"])]
        if not notes:
            continue
        for text, _ in reversed(notes):
            row.setdefault("notes", []).insert(0, f"loss: {text}")
        row["loss"] = notes[0][1]
        flagged.append(row["id"])
    return {"tolerance": applied, "reference_row": base["id"], "rows": flagged,
            "how": "scores in [0, 1]: points below the reference row; error metrics: share above it; snr_db: a floor "
                   "in dB; every output of a model of several outputs on its own. A note only: budgets (check:) "
                   "decide the exit code"}


def _losses(metrics: dict, reference: dict, wanted: list[tuple[str, bool]], tolerance, reference_row: str
            ) -> list[tuple[str, dict]]:
    """``(note text, loss record)`` for the first of ``wanted`` metrics worse than ``reference``
    past its tolerance (one note per row or output), or []."""
    for metric, up in wanted:
        value, ref = metrics.get(metric), reference.get(metric)
        if not isinstance(value, (int, float)) or not isinstance(ref, (int, float)):
            continue
        limit = tolerance(metric, up, reference)
        worse = None if limit is None else loss_of(metric, value, ref, up, limit)
        if worse is None:
            continue
        said = _describe_tolerance(metric, up, limit)
        shown = (f"{value:.1f} dB, {said}" if metric == "snr_db"
                 else f"{value:.4f} vs {ref:.4f} on {reference_row} ({worse}, {said})")
        return [(f"{metric} {shown}", {"metric": metric, "value": value, "reference": ref,
                                       "reference_row": reference_row, "worse_by": worse, "tolerance": limit})]
    return []


def mark_suspect(rows: list[dict], sanity: dict[str, Any] | None) -> None:
    """The baseline row (the first) gets ``suspect: true`` and a note when ``sanity`` says so."""
    if not rows or not sanity or not sanity.get("suspect"):
        return
    rows[0]["suspect"] = True
    rows[0].setdefault("notes", []).insert(
        0, f"suspect: accuracy {sanity['baseline']:.4f} is not above the majority class ({sanity['majority_class']['share']:.4f})"
           f" or chance ({sanity['chance']:.4f}) of the test split")


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The lines under the results table: a suspect baseline, and how many rows carry a loss flag."""
    lines = []
    sanity = results.get("sanity") or {}
    if sanity.get("suspect"):
        lines.append(sanity.get("reason") or "suspect baseline: at or below the sanity floor of its test split")
    flags = results.get("loss_flags") or {}
    if flags.get("rows"):
        ids = flags["rows"]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        primary, higher = results.get("primary_metric"), results.get("higher_is_better", True)
        limits = ", ".join(f"{m} {_describe_tolerance(m, higher if m == primary else m not in ERROR_METRICS, t)}"
                           for m, t in (flags.get("tolerance") or {}).items())
        lines.append(f"loss: {len(ids)} row(s) worse than {flags.get('reference_row')} ({limits}): {shown}; a note, "
                     "not a failure: budgets in the recipe's check: decide the exit code")
    return lines
