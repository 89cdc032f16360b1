"""The summary of a build of several recipes: one line per recipe (its status and, per format,
its fastest row with its metric), printed and written as summary.json."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RecipeOutcome:
    """How one recipe of a many-recipe build ended."""

    name: str
    path: str
    run_dir: str
    #: ok | failed (some rows failed) | error (the build stopped: bad input, ...) | interrupted | not built
    status: str
    exit_code: int
    reason: str | None = None
    results: dict[str, Any] | None = field(default=None, repr=False)
    seconds: float | None = None


def best_per_format(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per format: the ok row with the lowest p50 on the build's first target, with its primary
    metric beside it (speed alone would crown a broken int8 row: the reader, or `edgekit check`
    with the recipe's budgets, judges the metric)."""
    rows = [r for r in results.get("rows", []) if r.get("status") == "ok" and (r.get("latency_ms") or {}).get("p50")]
    if not rows:
        return {}
    first_target = results["rows"][0]["target"]
    metric = results.get("primary_metric")
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["target"] != first_target:
            continue
        current = best.get(row["format"])
        if current is None or row["latency_ms"]["p50"] < current["p50_ms"]:
            best[row["format"]] = {"id": row["id"], "p50_ms": row["latency_ms"]["p50"],
                                   "metric": (row.get("metrics") or {}).get(metric), "size_bytes": row.get("size_bytes")}
    return best


def summary(outcomes: list[RecipeOutcome], exit_code: int) -> dict[str, Any]:
    """summary.json: the exit code and, per recipe, its status, run directory and best rows."""
    return {
        "exit_code": exit_code,
        "recipes": [{"name": o.name, "path": o.path, "run_dir": o.run_dir, "status": o.status, "exit_code": o.exit_code,
                     "reason": o.reason, "build_seconds": o.seconds,
                     "primary_metric": (o.results or {}).get("primary_metric"),
                     "best": best_per_format(o.results) if o.results else {}} for o in outcomes],
    }


def print_summary(data: dict[str, Any], console=None) -> None:
    """The terminal table: recipe, status, best row per format (id, metric, p50)."""
    from rich.console import Console
    from rich.table import Table

    from edgekit.report.cells import human_ms

    console = console or Console(width=None if sys.stdout.isatty() else 200)
    formats = sorted({fmt for r in data["recipes"] for fmt in r["best"]}, key=lambda f: (f != "keras", f))
    table = Table(title=f"edgekit: {len(data['recipes'])} recipes (per format, the row with the lowest p50)",
                  title_justify="left")
    table.add_column("recipe", no_wrap=True)
    table.add_column("status", overflow="fold")
    for fmt in formats:
        table.add_column(f"best {fmt}", overflow="fold")
    for recipe in data["recipes"]:
        status = recipe["status"] + (f": {recipe['reason']}" if recipe["reason"] else "")
        cells = []
        for fmt in formats:
            best = recipe["best"].get(fmt)
            if best is None:
                cells.append("-")
                continue
            stem, _, target = best["id"].partition("@")
            metric = "" if best["metric"] is None else f" {recipe['primary_metric']} {best['metric']:.4g}"
            cells.append(f"{stem}{metric}, {human_ms(best['p50_ms'])} on {target}")
        style = {"ok": None, "failed": "red", "error": "red"}.get(recipe["status"], "yellow")
        table.add_row(recipe["name"], status, *cells, style=style)
    console.print(table)


def write_summary(folder: Path, data: dict[str, Any]) -> Path:
    from edgekit.report import write_json

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    write_json(path, data)
    return path
