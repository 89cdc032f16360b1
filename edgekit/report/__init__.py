"""Write what a build measured: results.json (the contract), latency.json, report.md and
report.html. The terminal, markdown and HTML tables all come from the same cells (cells.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.report.markdown import markdown


def write_json(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write(results: dict, latencies: dict[str, list[float]], run_dir: Path, cache=None) -> None:
    """Write results.json, latency.json (every timed run, per row) and report.md (and
    report.html, its plots taken from the stage ``cache`` where drawn before from the same figures)."""
    write_json(run_dir / "results.json", results)
    write_json(run_dir / "latency.json", {"unit": "ms", "rows": latencies})
    (run_dir / "report.md").write_text(markdown(results))
    try:  # the HTML page is a view: a plotting problem must never cost the results above
        from edgekit.report import html as html_report

        html_report.write(results, run_dir, latencies, cache=cache)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: report.html not written: {type(exc).__name__}: {exc}; "
              f"retry with: edgekit report {run_dir}", file=sys.stderr)
