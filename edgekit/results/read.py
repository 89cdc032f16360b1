"""Reading results.json back: the file parsed, its shape and every value checked, in one-line
errors that name the file and the fix. Standard library only.

Two kinds of bad input, two exit codes: a file that is not a results file at all (not JSON, a
missing key, a string where a number belongs) is an InputError (exit 2); a results file whose
numbers cannot be measurements (NaN, inf, a latency at or below zero) is read, and
``value_problems`` names them so that ``edgekit check`` fails its budgets (exit 1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgekit.errors import InputError, one_line


def read_json(path: Path, what: str) -> object:
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise InputError(f"{path}: {what} not found; pass a run directory or its results.json (edgekit build writes RUN_DIR/results.json)"
                         + (" or a file from `edgekit baseline save`" if what == "baseline" else ""))
    try:
        return json.loads(path.read_text())
    # ValueError also covers integers past Python's 4300-digit limit; RecursionError, deep nesting.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{path}: {what} is not valid JSON ({one_line(exc, 120, typed=False)}); "
                         "expected a file written by edgekit") from None


def validate_results(doc: object, path: Path | str, what: str = "results") -> dict:
    """Check the shape of a parsed results file (``edgekit.results.schema``: every field any
    reader reads has its type) and the row fields check and report compute with.

    Raises:
        InputError: naming the file, the field, what was expected and what was found.
    """
    from edgekit.results.schema import check_shape

    doc = check_shape(doc, path, what)
    for i, row in enumerate(doc["rows"]):
        if problem := _row_problem(row):
            raise InputError(f"{path}: {what}: rows[{i}] ({row['id']}): {problem}; was the file edited by hand?")
    return doc


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _row_problem(row: dict) -> str | None:
    """What is wrong with the fields check and report read from a row, or None."""
    metrics, latency, size = row.get("metrics"), row.get("latency_ms"), row.get("size_bytes")
    if metrics is not None and not (isinstance(metrics, dict) and all(map(_number, metrics.values()))):
        return f"metrics: expected an object of numbers, received {metrics!r:.60}"
    if latency is not None and not (isinstance(latency, dict) and _number(latency.get("p50"))
                                    and all(map(_number, latency.values()))):
        return f"latency_ms: expected null or an object of numbers with p50, received {latency!r:.60}"
    if size is not None and not isinstance(size, int):
        return f"size_bytes: expected an integer or null, received {size!r:.60}"
    return None


def non_finite(value: float) -> str | None:
    """How a number is not finite: NaN, inf or -inf (inf too for an integer too large for a float,
    which JSON allows), else None. Every comparison with NaN is False, so a NaN that reached a
    budget would pass it: every budget asks this first."""
    try:
        number = float(value)
    except OverflowError:
        return "inf" if value > 0 else "-inf"
    if math.isnan(number):
        return "NaN"
    return ("inf" if number > 0 else "-inf") if math.isinf(number) else None


def latency_problem(key: str, value: float) -> str | None:
    """Why one latency_ms value cannot be a measurement, or None: it must be finite and not
    negative, and the p50 above zero (a median time of 0 ms was never measured)."""
    if why := non_finite(value):
        return why
    if value < 0 or (key == "p50" and value == 0):
        return f"{value:g} (expected {'> 0' if key == 'p50' else '>= 0'})"
    return None


def value_problems(row: dict) -> list[str]:
    """What in a row's metrics, latency and size cannot be believed, one phrase each (empty when
    all can). Metrics only need to be finite: some are negative by nature (an R^2)."""
    problems = [f"metrics.{key} is {why}" for key, value in (row.get("metrics") or {}).items()
                if (why := non_finite(value))]
    problems += [f"latency_ms.{key} is {why}" for key, value in (row.get("latency_ms") or {}).items()
                 if (why := latency_problem(key, value))]
    size = row.get("size_bytes")
    if size is not None and size < 0:
        problems.append(f"size_bytes is {size} (expected >= 0)")
    return problems


def load_results(path: Path) -> dict:
    """Read and validate a results.json (or a run directory holding one)."""
    return validate_results(read_json(Path(path), "results"), path)
