"""The results table printed at the end of a build, for the terminal it is printed to (rich).

A row's notes and reasons (failure reasons, ``unstable timing``, ``int8 slower ... cause:``,
loss flags) are long prose; in a column they made the table wider than any terminal, so a
narrow one dropped them, and a wide one wrapped each row eight lines deep. Here the table holds
each row's status with a footnote number (``ok [3]``, ``failed [4]``) and the notes follow the
table, numbered, one line each (wrapped on a terminal). Columns that do not fit the terminal are
left out whole, least useful first (the id repeats format and precision); a number is never cut.

``--format`` gives scripts the same content without a layout: ``plain`` (tab-separated, every
column, the notes in the last one), ``markdown`` (the table as report.md has it) or ``json``.
"""

from __future__ import annotations

import json
import os
import sys

from edgekit.report.cells import (
    COLUMNS,
    NUMERIC,
    cells,
    not_produced_line,
    speedup_line,
    target_cells,
)

#: what ``--format`` may say
FORMATS = ("table", "plain", "markdown", "json")
#: the width of a table that is not printed to a terminal (a pipe, a CI log), unless $COLUMNS says
PIPE_WIDTH = 120
#: columns left out, in this order, until the table fits; "speedup interval" shortens the
#: speedup cell to its point value ("15.23x") before the column itself goes
DROP_ORDER = ("format", "precision", "gzip", "sparsity", "speedup interval", "delta", "mem", "speedup", "size")
#: the status column of the terminal table (its notes are footnotes)
STATUS = "status"


def notes_of(row: dict) -> list[str]:
    """What a row's status cell cannot hold: the reason of a row that is not ok, else its notes."""
    if row["status"] != "ok":
        return [f"{row['status']}: {row.get('reason') or 'no reason recorded'}"]
    return list(row.get("notes") or [])


def footnotes(results: dict) -> tuple[list[str], list[tuple[int, str, list[str]]]]:
    """The status cell of every row (``ok``, ``ok [1]``, ``failed [2]``) and the numbered
    footnotes: ``(number, row id, notes)`` for each row that has any."""
    status, notes = [], []
    for row in results["rows"]:
        found = notes_of(row)
        if found:
            notes.append((len(notes) + 1, row["id"], found))
            status.append(f"{row['status']} [{len(notes)}]")
        else:
            status.append(row["status"])
    return status, notes


def print_table(results: dict, console=None, fmt: str = "table") -> None:
    """Print the results table: fitted to the terminal with the notes as footnotes (``table``),
    or as ``plain`` / ``markdown`` / ``json`` text for scripts (``FORMATS``)."""
    if fmt != "table":
        text = render(results, fmt)
        if console is not None:
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            sys.stdout.write(text)
        return
    from rich.console import Console

    if console is None:
        tty = sys.stdout.isatty()
        # A pipe or CI log is no terminal: a fixed width ($COLUMNS wins), and footnotes unwrapped.
        console = Console(width=None if tty else _pipe_width(), soft_wrap=False)
    _print_rich(results, console)


def _pipe_width() -> int:
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return PIPE_WIDTH


def _print_rich(results: dict, console) -> None:
    status, notes = footnotes(results)
    columns, short = fit_columns(results, status, console.width)
    console.print(_table(results, status, columns, short))
    if side_by_side := target_cells(results):
        for number, part in enumerate(column_groups(side_by_side, console.width)):
            console.print(_plain_table("p50 latency by target" if number == 0 else "", part))
    rows = {row["id"]: row for row in results["rows"]}
    for line, row_id in footnote_lines(notes, console.width if console.is_terminal else None):
        console.print(line, style=_row_style(rows[row_id]), markup=False, highlight=False, soft_wrap=True)
    lines = [f"baseline: {results['baseline']}; {speedup_line(results)}"]
    from edgekit.report.flags import summary_lines

    lines += summary_lines(results)
    lines += [line for line in [not_produced_line(results)] if line]
    for line in lines:
        style = "red" if line.startswith("suspect") else "yellow" if line.startswith("loss") else None
        console.print(_wrap(line, console.width, 0) if console.is_terminal else line, style=style, markup=False,
                      highlight=False, soft_wrap=True)


def footnote_lines(notes: list[tuple[int, str, list[str]]], width: int | None) -> list[tuple[str, str]]:
    """``(text, row id)`` of every footnote: ``[3] tflite-int8@cpu: <first note>``, the row's
    further notes under it; wrapped to ``width`` with a hanging indent (None: one line each)."""
    out = []
    for number, row_id, texts in notes:
        mark = f"[{number}] "
        for i, text in enumerate(texts):
            line = f"{mark}{row_id}: {text}" if i == 0 else " " * len(mark) + text
            out.append((_wrap(line, width, len(mark)) if width else line, row_id))
    return out


def _wrap(line: str, width: int, indent: int) -> str:
    import textwrap

    return textwrap.fill(line, width=max(width, indent + 20), subsequent_indent=" " * indent, break_on_hyphens=False,
                         drop_whitespace=True)


def _row_style(row: dict) -> str | None:
    return {"failed": "red", "skipped": "dim"}.get(row["status"], "yellow" if row.get("notes") else None)


def _display(results: dict, status: list[str], short_speedup: bool) -> tuple[list[str], list[list[str]]]:
    """The header and cells of the terminal table, every column (status without its notes)."""
    metric = results["primary_metric"]
    header = [c.replace("metric", metric).replace("delta", "Δ vs base") if c != "status / notes" else STATUS
              for c in COLUMNS]
    rows = []
    for line, cell in zip(cells(results), status):
        line = [*line[:-1], cell]
        if short_speedup:
            line[COLUMNS.index("speedup")] = line[COLUMNS.index("speedup")].split(" [", 1)[0]
        rows.append(line)
    return header, rows


def fit_columns(results: dict, status: list[str], width: int) -> tuple[list[str], bool]:
    """The columns of COLUMNS kept at ``width`` (id and the status column always), and whether the
    speedup cell is shortened to its point value: the first of DROP_ORDER's steps whose table's
    natural width fits."""
    kept = [c for c in COLUMNS if c != "status / notes"] + [STATUS]
    short = False
    for drop in (None, *DROP_ORDER):
        if drop == "speedup interval":
            short = True
        elif drop is not None:
            kept.remove(drop)
        if _natural_width(_table(results, status, kept, short)) <= width:
            break
    return kept, short


def _natural_width(table) -> int:
    """The width ``table`` takes when nothing limits it."""
    import io

    from rich.console import Console
    from rich.measure import Measurement

    console = Console(width=100_000, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, table).maximum


def _table(results: dict, status: list[str], kept: list[str], short: bool):
    from rich import box
    from rich.table import Table

    header, rows = _display(results, status, short)
    keep = [COLUMNS.index(c if c != STATUS else "status / notes") for c in kept]
    table = Table(title=f"edgekit: {results['recipe']['name']}", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column, i in zip(kept, keep):
        # Numbers and statuses never fold: a terminal narrower than the fewest columns folds the id.
        widest = max(len(header[i]), *(len(r[i]) for r in rows))
        table.add_column(header[i], justify="right" if column in NUMERIC else "left", no_wrap=column != "id",
                         overflow="fold", min_width=None if column == "id" else widest)
    for row, line in zip(results["rows"], rows):
        table.add_row(*(line[i] for i in keep), style=_row_style(row))
    return table


def column_groups(lines: list[list[str]], width: int) -> list[list[list[str]]]:
    """``lines`` (a header and rows, first column the label) cut into tables that fit ``width``
    side by side, the label column repeated in each: ten device columns in 120 characters were
    cut to "dev (tflite_runtime 2.…" and "ba…" before, unreadable."""
    widths = [max(len(line[i]) for line in lines) + 3 for i in range(len(lines[0]))]
    groups, current = [], []
    for i in range(1, len(widths)):
        if current and widths[0] + sum(widths[j] for j in current) + widths[i] > width:
            groups.append(current)
            current = []
        current.append(i)
    groups.append(current)
    return [[[line[0], *(line[j] for j in group)] for line in lines] for group in groups]


def _plain_table(title: str, lines: list[list[str]]):
    from rich import box
    from rich.table import Table

    header, *rows = lines
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, column in enumerate(header):
        table.add_column(column, justify="right" if i else "left", no_wrap=True)
    for line in rows:
        table.add_row(*line)
    return table


def render(results: dict, fmt: str) -> str:
    """The table as text for scripts: ``plain`` (tab-separated: a header, then one line per row,
    every column, the status with its notes last), ``markdown`` or ``json``."""
    if fmt not in FORMATS or fmt == "table":
        raise ValueError(f"format: expected one of {', '.join(FORMATS[1:])}, received {fmt!r}")
    metric = results["primary_metric"]
    header = [c.replace("metric", metric).replace("delta", f"Δ {metric}") for c in COLUMNS]
    rows = cells(results)
    if fmt == "plain":
        return "\n".join("\t".join(c.replace("\t", " ").replace("\n", " ") for c in line)
                         for line in [header, *rows]) + "\n"
    if fmt == "markdown":
        from edgekit.report.flags import summary_lines

        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines += ["", f"baseline: `{results['baseline']}`; {speedup_line(results)}"]
        lines += [f"**{line}**" for line in summary_lines(results)]
        lines += [line for line in [not_produced_line(results)] if line]
        return "\n".join(lines) + "\n"
    return json.dumps(_json(results), indent=2) + "\n"


def _json(results: dict) -> dict:
    """What the table shows, as numbers: one object per row."""
    from edgekit.report.flags import summary_lines

    metric = results["primary_metric"]
    rows = []
    for row in results["rows"]:
        lat = row.get("latency_ms") or {}
        rows.append({
            "id": row["id"], "format": row.get("format"), "precision": row.get("precision"), "target": row.get("target"),
            "status": row["status"], "reason": row.get("reason"), "notes": list(row.get("notes") or []),
            "size_bytes": row.get("size_bytes"), "gzip_bytes": row.get("gzip_bytes"),
            "sparsity": (row.get("weights") or {}).get("sparsity"), metric: (row.get("metrics") or {}).get(metric),
            f"delta_{metric}": (row.get("delta") or {}).get(metric), "p50_ms": lat.get("p50"),
            "speedup": row.get("speedup_vs_baseline"), "speedup_ci95": row.get("speedup_vs_baseline_ci95"),
            "peak_bytes": (row.get("memory") or {}).get("peak_bytes"),
        })
    return {"recipe": results["recipe"]["name"], "primary_metric": metric, "baseline": results["baseline"],
            "speedup_baseline": results.get("speedup_baseline") or results["baseline"],
            "summary": summary_lines(results), "rows": rows}
