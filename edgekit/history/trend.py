"""`edgekit history RECIPE|ROW`: a row's trend over the recorded builds, as text and a plot.

For a recipe name: one line per row (and target) of it, its latest p50 with its 95% interval,
the geometric mean of the runs before and the change, the metric and the size; for a row id
(``tflite-int8@cpu``, or ``tflite-int8`` for every target): one line per recorded run. The plot
draws each series' p50 with its interval per run, in time order.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

from edgekit.errors import InputError


def series_for(store, name: str, recipe: str | None = None, target: str | None = None,
               last: int = 30) -> tuple[str, dict[tuple[str, str, str], list[dict]]]:
    """What ``name`` means in ``store``, and its series: ``{(recipe, row id, target): [runs, oldest
    first]}`` (each measurement once, the last ``last``).

    Raises:
        InputError: nothing in the store is called ``name``.
    """
    rows = store.series(recipe=name) if recipe is None else []
    kind = "recipe"
    if not rows:
        kind = "row"  # a whole row id, or its variant part (every target's row of it)
        rows = store.series(recipe=recipe, row_id=name, target=target) if "@" in name else [
            r for r in store.series(recipe=recipe, target=target) if r["row_id"].rpartition("@")[0] == name]
    if not rows:
        known = sorted({r["recipe_name"] for r in store.series()})
        raise InputError(f"history {store.url}: no recipe or row called {name!r} (recipes there: "
                         f"{', '.join(known) or 'none'}); give a recipe name or a row id such as tflite-int8@cpu")
    out: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if target is not None and r["target"] != target:
            continue
        runs = out.setdefault((r["recipe_name"], r["row_id"], r["target"]), [])
        if not any(seen["measured_at"] == r["measured_at"] for seen in runs):
            runs.append(r)
    return kind, {key: runs[-last:] for key, runs in out.items()}


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _p50(r: dict) -> str:
    from edgekit.report.cells import human_ms

    if r["p50_ms"] is None:
        return r["status"]
    interval = f" [{human_ms(r['p50_lo_ms'])}-{human_ms(r['p50_hi_ms'])}]" if r["p50_lo_ms"] is not None else ""
    return f"{human_ms(r['p50_ms'])}{interval}"


def _metric(r: dict) -> str:
    return f"{r['metric']} {r['metric_value']:.4f}" if r["metric_value"] is not None else f"{r['metric'] or 'metric'} -"


def _size(r: dict) -> str:
    from edgekit.report.cells import human_size

    return human_size(r["size_bytes"]) if r["size_bytes"] is not None else "-"


def text(kind: str, series: dict) -> str:
    """The trend as lines of text."""
    from edgekit.report.cells import human_ms

    lines = []
    if kind == "recipe":
        lines.append(f"{'row':<34} {'runs':>4}  {'latest p50 [95%]':<26} {'before (geo. mean)':<18} {'change':>7}  "
                     f"{'metric':<18} size")
        for (_, row_id, _), runs in series.items():
            latest = runs[-1]
            before = [r["p50_ms"] for r in runs[:-1] if r["p50_ms"]]
            mean = math.exp(sum(map(math.log, before)) / len(before)) if before else None
            change = f"{latest['p50_ms'] / mean - 1:+.1%}" if mean and latest["p50_ms"] else "-"
            lines.append(f"{row_id:<34} {len(runs):>4}  {_p50(latest):<26} {human_ms(mean) if mean else '-':<18} "
                         f"{change:>7}  {_metric(latest):<18} {_size(latest)}")
        return "\n".join(lines)
    for (recipe, row_id, _), runs in series.items():
        lines.append(f"{row_id} ({recipe}), {len(runs)} run(s):")
        for r in runs:
            device = f"  on {r['device']}" if r["device"] else ""
            commit = r["git_commit"][:10] or "-"
            lines.append(f"  {_when(r['measured_at'])}  {commit:<10}  {_p50(r):<28} {_metric(r):<18} {_size(r)}{device}")
    return "\n".join(lines)


def plot(series: dict, path: Path, title: str) -> Path:
    """Each series' p50 per run with its 95% interval, against time, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), dpi=100)
    ax = fig.subplots()
    for (_, row_id, _), runs in series.items():
        runs = [r for r in runs if r["p50_ms"] is not None]
        if not runs:
            continue
        times = [datetime.datetime.fromtimestamp(r["measured_at"], datetime.timezone.utc) for r in runs]
        p50 = [r["p50_ms"] for r in runs]
        low = [r["p50_ms"] - (r["p50_lo_ms"] if r["p50_lo_ms"] is not None else r["p50_ms"]) for r in runs]
        high = [(r["p50_hi_ms"] if r["p50_hi_ms"] is not None else r["p50_ms"]) - r["p50_ms"] for r in runs]
        ax.errorbar(times, p50, yerr=[low, high], marker="o", markersize=3, capsize=2, linewidth=1, label=row_id)
    ax.set_ylabel("p50 latency (ms), 95% interval")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(series) <= 12:
        ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
