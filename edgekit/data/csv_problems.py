"""What is wrong with the cells of a CSV file, all of it in one line: each problem at its line
of the file and its column, and the fix per column (a categorical column: one-hot encode or
drop it; missing values: impute them or drop those lines).

A file is read whole before it is refused, so that one run names every problem (the first
SHOWN, and how many in all) instead of one per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

#: how many problems an error lists one by one (all of them are counted)
SHOWN = 10
#: cell texts that mean "no value" in files written by spreadsheets, pandas and R
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-", "#n/a"})


@dataclass(frozen=True)
class Problem:
    """One cell (or row) that cannot be read: ``kind`` is "text" (not a number), "missing",
    "infinite" or "columns" (a row with ``value`` columns where the header has ``expected``)."""

    line: int
    column: str | None
    kind: str
    value: str
    label: bool = False
    expected: int = 0

    def where(self) -> str:
        return f"line {self.line}" + (f' column "{self.column}"' if self.column is not None else "")

    def what(self) -> str:
        if self.kind == "columns":
            return f"{self.value} columns, the header has {self.expected}"
        if self.kind == "missing":
            return f"{self.value!r}: a missing value" if self.value.strip() else "empty: a missing value"
        if self.kind == "infinite":
            return f"{self.value!r}: infinite"
        return f"{self.value!r} is not a number"


def number(text: str) -> tuple[float, str | None]:
    """(the cell's number, None), or (0.0, the problem's kind) for a cell that holds none."""
    if text.strip().lower() in MISSING:
        return 0.0, "missing"
    try:
        value = float(text)
    except ValueError:
        return 0.0, "text"
    if math.isnan(value):
        return 0.0, "missing"
    if math.isinf(value) or abs(value) > 3.4e38:  # beyond float32: inf once read
        return 0.0, "infinite"
    return value, None


def describe(path: Path, problems: list[Problem], data_lines: int) -> str:
    """The one-line error for a file's problems: how many, the first SHOWN at their line and
    column (a categorical column counts once, not once per line), then the fix for each column
    (and for rows of the wrong width)."""
    categorical = _categorical(problems, data_lines)
    entries = [f'column "{column}": text on {len(found)} of {data_lines} lines (line {found[0].line}: {found[0].value!r})'
               for column, found in categorical.items()]
    entries += [f"{p.where()}: {p.what()}" for p in problems if not (p.kind == "text" and p.column in categorical)]
    more = f"; and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
    head = (f"{path}: {len(entries)} problem(s) in {data_lines} data line(s) (line numbers are the file's)"
            f"{' (first ' + str(SHOWN) + ')' if more else ''}: {'; '.join(entries[:SHOWN])}{more}")
    return f"{head}. To fix: {'; '.join(_fixes(problems, categorical))}"


def _by_column(problems: list[Problem]) -> dict[str, list[Problem]]:
    by_column: dict[str, list[Problem]] = {}
    for p in problems:
        if p.column is not None:
            by_column.setdefault(p.column, []).append(p)
    return by_column


def _categorical(problems: list[Problem], data_lines: int) -> dict[str, list[Problem]]:
    """Feature columns whose values are mostly text (half of the lines that hold a value, or
    more): categories, not numbers with a few typos. Their text cells, by column."""
    out = {}
    for column, found in _by_column(problems).items():
        texts = [p for p in found if p.kind == "text"]
        missing = sum(p.kind == "missing" for p in found)
        if texts and not found[0].label and len(texts) * 2 >= data_lines - missing:
            out[column] = texts
    return out


def _fixes(problems: list[Problem], categorical: dict[str, list[Problem]]) -> list[str]:
    fixes = []
    widths = [p for p in problems if p.kind == "columns"]
    if widths:
        fixes.append(f"{len(widths)} line(s) ({_lines(widths)}) have another number of columns than the header: "
                     "quote fields that hold commas, or remove the stray separators")
    for column, found in _by_column(problems).items():
        role = "the label column" if found[0].label else "feature column"
        texts = [p for p in found if p.kind == "text"]
        missing = [p for p in found if p.kind == "missing"]
        infinite = [p for p in found if p.kind == "infinite"]
        if column in categorical:
            values = list(dict.fromkeys(p.value for p in texts))
            listed = ", ".join(repr(v) for v in values[:4]) + (", ..." if len(values) > 4 else "")
            fixes.append(f'{role} "{column}" holds text ({listed}): a categorical column; one-hot encode it into '
                         f"numeric 0/1 columns (one per value), map it to numbers, or drop the column")
        elif texts and found[0].label:
            fixes.append(f'{role} "{column}" has {len(texts)} value(s) that are not numbers ({_lines(texts)}): a '
                         "regression target must be a number; correct them, or set task: classification if they name classes")
        elif texts:
            fixes.append(f'{role} "{column}" has {len(texts)} value(s) that are not numbers ({_lines(texts)}): '
                         "correct them (a decimal comma? a unit?) or drop those lines")
        if missing:
            what = "label(s)" if found[0].label else "value(s)"
            fixes.append(f'{role} "{column}" has {len(missing)} missing {what} ({_lines(missing)}): '
                         + ("drop those lines" if found[0].label else "impute them (e.g. the column's median) or drop those lines"))
        if infinite:
            fixes.append(f'{role} "{column}" has {len(infinite)} infinite value(s) ({_lines(infinite)}): '
                         "replace them with finite numbers or drop those lines")
    return fixes


def _lines(problems: list[Problem]) -> str:
    lines = [str(p.line) for p in problems]
    return ("line " if len(lines) == 1 else "lines ") + ", ".join(lines[:5]) + (", ..." if len(lines) > 5 else "")
