"""The results table printed at the end of a build (rich)."""

from __future__ import annotations

import sys

from edgekit.report.cells import (
    COLUMNS,
    NUMERIC,
    cells,
    not_produced_line,
    speedup_line,
    target_cells,
)


def print_table(results: dict, console=None) -> None:
    """Print the results table to the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    # CI logs are not terminals: give them a wide table instead of rich's 80-column default.
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    metric = results["primary_metric"]
    table = Table(title=f"edgekit: {results['recipe']['name']}", title_justify="left")
    rows = cells(results)
    # A narrow terminal drops the columns the id repeats, then gzip, sparsity and delta (results.json
    # and report.md keep them all); numbers and ids are never cut short, notes fold.
    dropped = ("format", "precision") if console.width < 150 else ()
    dropped += ("gzip", "sparsity", "mem") if console.width < 110 else ()
    dropped += ("delta",) if console.width < 90 else ()
    columns = [c for c in COLUMNS if c not in dropped]
    for column in columns:
        name = column.replace("metric", metric).replace("delta", "Δ vs base")
        numeric = column in NUMERIC
        width = max([len(name)] + [len(r[COLUMNS.index(column)]) for r in rows])
        table.add_column(name, justify="right" if numeric else "left", no_wrap=column != "status / notes",
                         min_width=width if column != "status / notes" else 12, overflow="fold")
    keep = [COLUMNS.index(c) for c in columns]
    for row, display in zip(results["rows"], ([r[i] for i in keep] for r in rows)):
        style = {"failed": "red", "skipped": "dim"}.get(row["status"], "yellow" if row["notes"] else None)
        table.add_row(*display, style=style)
    console.print(table)
    if side_by_side := target_cells(results):
        header, *lines = side_by_side
        by_target = Table(title="p50 latency by target", title_justify="left")
        for i, column in enumerate(header):
            by_target.add_column(column, justify="right" if i else "left", no_wrap=True)
        for line in lines:
            by_target.add_row(*line)
        console.print(by_target)
    console.print(f"baseline: {results['baseline']}; {speedup_line(results)}")
    from edgekit.report.flags import summary_lines

    for line in summary_lines(results):
        console.print(line, style="red" if line.startswith("suspect") else "yellow", markup=False, highlight=False)
    if skipped := not_produced_line(results):
        console.print(skipped)
