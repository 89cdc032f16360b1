"""``edgekit compare RUN_A RUN_B``: what changed per row id between two runs, and a CI verdict.

One line per row id of either run: status, the primary metric, the artifact size, the p50
latency with the ratio B/A and its 95% interval where both rows were timed in rounds (the
same interval the report gives speedups: ``edgekit.bench.stats.ratio_interval``), and the
speedup against each run's own baseline. A p50 change is called faster or slower only where
its interval excludes 1; a row whose rounds disagreed (``timing.unstable``) gets no verdict.
Raw p50s compare only runs timed on the same machine; the speedup column (an in-run ratio)
compares across machines. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import InputError
from edgekit.report.cells import human_ms, human_size, metric_cell

#: what ``--fail-on`` accepts: name -> what it means
FAIL_ON = {
    "metric": "the primary metric got worse by more than VALUE (its own units) on a row ok in both runs",
    "p50": "a row's p50 grew past VALUE times run A's (significantly, where it has an interval)",
    "size": "a row's artifact grew past VALUE times run A's size",
    "status": "a row ok in run A is failed, skipped or missing in run B (no VALUE)",
}


@dataclass
class Change:
    """One row id across both runs."""

    id: str
    a: dict | None
    b: dict | None
    cells: list[str]
    failures: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    a: str
    b: str
    metric: str
    changes: list[Change]
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f"{c.id}: {why}" for c in self.changes for why in c.failures]


COLUMNS = ("id", "status", "metric", "size", "p50", "p50 B/A", "speedup")


def parse_fail_on(items: tuple[str, ...] | list[str]) -> dict[str, float | None]:
    """``["metric=0.01", "p50=1.10", "status"]`` -> ``{"metric": 0.01, "p50": 1.1, "status": None}``.

    Raises:
        InputError: an unknown name, a missing or non-positive value.
    """
    budgets: dict[str, float | None] = {}
    for item in items:
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in FAIL_ON:
            raise InputError(f"--fail-on {item}: unknown budget {name!r}; expected one of "
                             "metric=DROP, p50=RATIO, size=RATIO, status")
        if name == "status":
            budgets[name] = None
            continue
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < 0 or (name != "metric" and number <= 0):
            raise InputError(f"--fail-on {item}: expected {name}=NUMBER ({FAIL_ON[name]}), received {value or 'nothing'!r}")
        budgets[name] = number
    return budgets


def compare(a: dict, b: dict, a_name: str = "A", b_name: str = "B",
            fail_on: dict[str, float | None] | None = None) -> Comparison:
    """Every row id of ``a`` and ``b`` (results.json documents), in A's order then B's new ones."""
    from edgekit.results.metrics import higher_is_better

    fail_on = fail_on or {}
    metric = b.get("primary_metric") or a.get("primary_metric")
    notes = []
    if a.get("primary_metric") != b.get("primary_metric"):
        notes.append(f"the runs score different metrics ({a.get('primary_metric')} in A, {b.get('primary_metric')} in B): "
                     f"{metric} is compared where both rows have it")
    higher = higher_is_better(b, metric)
    rows_a = {r["id"]: r for r in a["rows"]}
    rows_b = {r["id"]: r for r in b["rows"]}
    changes = []
    for row_id in [*rows_a, *(r for r in rows_b if r not in rows_a)]:
        ra, rb = rows_a.get(row_id), rows_b.get(row_id)
        change = Change(row_id, ra, rb, [])
        change.cells = [row_id, _status(ra, rb), _metric(ra, rb, metric), _size(ra, rb), _p50s(ra, rb),
                        _p50_verdict(ra, rb), _speedup(ra, rb)]
        change.failures = _failures(ra, rb, metric, higher, fail_on)
        changes.append(change)
    return Comparison(a_name, b_name, metric, changes, notes)


def _ok(row: dict | None) -> bool:
    return row is not None and row.get("status") == "ok"


def _status(a: dict | None, b: dict | None) -> str:
    sa, sb = (a or {}).get("status", "missing"), (b or {}).get("status", "missing")
    return sa if sa == sb else f"{sa} -> {sb}"


def _value(row: dict | None, metric: str) -> float | None:
    return ((row or {}).get("metrics") or {}).get(metric) if _ok(row) else None


def _metric(a: dict | None, b: dict | None, metric: str) -> str:
    va, vb = _value(a, metric), _value(b, metric)
    if va is None and vb is None:
        return "-"
    if va is None or vb is None:
        return f"{metric_cell(metric, va)} -> {metric_cell(metric, vb)}"
    if va == vb:
        return metric_cell(metric, vb)
    return f"{metric_cell(metric, va)} -> {metric_cell(metric, vb)} ({vb - va:+.4f})"


def _size(a: dict | None, b: dict | None) -> str:
    sa, sb = (a or {}).get("size_bytes"), (b or {}).get("size_bytes")
    if sa == sb:
        return human_size(sb)
    change = f" ({(sb / sa - 1):+.1%})" if sa and sb else ""
    return f"{human_size(sa)} -> {human_size(sb)}{change}"


def _p50(row: dict | None) -> float | None:
    p50 = ((row or {}).get("latency_ms") or {}).get("p50") if _ok(row) else None
    return p50 if p50 is not None and p50 > 0 and math.isfinite(p50) else None


def _p50s(a: dict | None, b: dict | None) -> str:
    pa, pb = _p50(a), _p50(b)
    if pa is None and pb is None:
        return "-"
    shown_a, shown_b = human_ms(pa) if pa else "-", human_ms(pb) if pb else "-"
    return shown_b if shown_a == shown_b else f"{shown_a} -> {shown_b}"


def p50_ratio(a: dict | None, b: dict | None) -> tuple[float | None, list[float] | None, str]:
    """(B p50 / A p50, its 95% interval or None, the verdict: faster, slower, no significant
    change, unstable timing, or "" where there is no ratio)."""
    from edgekit.bench.stats import ratio_interval

    pa, pb = _p50(a), _p50(b)
    if pa is None or pb is None:
        return None, None, ""
    ratio = pb / pa
    if ((a.get("timing") or {}).get("unstable")) or ((b.get("timing") or {}).get("unstable")):
        return ratio, None, "unstable timing: no verdict"
    interval = ratio_interval(b, a, paired=False)  # two runs: never timed in the same rounds
    if interval is None:
        return ratio, None, "one round: no interval"
    lo, hi = interval
    verdict = "slower" if lo > 1 else "faster" if hi < 1 else "no significant change"
    return ratio, interval, verdict


def _p50_verdict(a: dict | None, b: dict | None) -> str:
    ratio, interval, verdict = p50_ratio(a, b)
    if ratio is None:
        return "-"
    shown = f"{ratio:.2f}x" + (f" [{interval[0]:.2f}-{interval[1]:.2f}]" if interval else "")
    return f"{shown} {verdict}"


def _speedup(a: dict | None, b: dict | None) -> str:
    sa, sb = (a or {}).get("speedup_vs_baseline"), (b or {}).get("speedup_vs_baseline")
    if not sa and not sb:
        return "-"
    shown_a, shown_b = f"{sa:.2f}x" if sa else "-", f"{sb:.2f}x" if sb else "-"
    return shown_b if shown_a == shown_b else f"{shown_a} -> {shown_b}"


def _failures(a: dict | None, b: dict | None, metric: str, higher: bool, fail_on: dict) -> list[str]:
    out = []
    if "status" in fail_on and _ok(a) and not _ok(b):
        out.append(f"status ok -> {(b or {}).get('status', 'missing')}"
                   + (f" ({b.get('reason')})" if b and b.get("reason") else ""))
    if not (_ok(a) and _ok(b)):
        return out
    va, vb = _value(a, metric), _value(b, metric)
    if "metric" in fail_on and va is not None and vb is not None:
        drop = (va - vb) if higher else (vb - va)
        if drop > fail_on["metric"] + 1e-9:
            out.append(f"{metric} {va:.4f} -> {vb:.4f}: worse by {drop:.4f} > {fail_on['metric']:g}")
    if "p50" in fail_on:
        ratio, interval, verdict = p50_ratio(a, b)
        significant = interval is None or interval[0] > 1
        if ratio is not None and ratio > fail_on["p50"] and significant and not verdict.startswith("unstable"):
            out.append(f"p50 {ratio:.2f}x run A's > {fail_on['p50']:g}x" + (f" (95% interval {interval[0]:.2f}-"
                                                                            f"{interval[1]:.2f})" if interval else ""))
    sa, sb = a.get("size_bytes"), b.get("size_bytes")
    if "size" in fail_on and sa and sb and sb / sa > fail_on["size"] + 1e-12:
        out.append(f"size {human_size(sa)} -> {human_size(sb)}: {sb / sa:.2f}x > {fail_on['size']:g}x")
    return out


def format_text(comparison: Comparison) -> str:
    """The plain-text table (terminals and CI logs), A and B named first."""
    lines = [f"A: {comparison.a}", f"B: {comparison.b}", f"metric: {comparison.metric}"]
    lines += [f"note: {n}" for n in comparison.notes]
    header = list(COLUMNS)
    header[COLUMNS.index("metric")] = comparison.metric
    table = [header, *(c.cells for c in comparison.changes)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS) - 1)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in table]
    return "\n".join(line.rstrip() for line in lines)


def summary_line(comparison: Comparison, budgets: dict) -> str:
    # changed: a status, metric or size that differs, or a p50 significantly faster or slower
    changed = sum(1 for c in comparison.changes if any("->" in cell for cell in c.cells[1:4]) or
                  c.cells[5].endswith(("slower", "faster")))
    head = f"{len(comparison.changes)} row(s) compared, {changed} changed"
    if not budgets:
        return f"{head}; no --fail-on budget"
    failed = comparison.failures
    if not failed:
        return f"{head}; every --fail-on budget holds ({', '.join(budgets)})"
    return f"{head}; {len(failed)} --fail-on budget(s) failed: " + "; ".join(failed[:5]) + ("; ..." if len(failed) > 5 else "")


def load_pair(path_a: Path, path_b: Path) -> tuple[dict, dict]:
    """The two runs' results (run directories or results.json files)."""
    from edgekit.results.read import load_results

    return load_results(Path(path_a)), load_results(Path(path_b))
