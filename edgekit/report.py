"""Write what a build measured: results.json (the contract), latency.json, report.md, and the
terminal table. The markdown and terminal tables come from the same cells."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("id", "format", "precision", "size", "gzip", "sparsity", "metric", "delta", "p50", "speedup", "status / notes")
NUMERIC = ("size", "gzip", "sparsity", "metric", "delta", "p50", "speedup")


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


def write(results: dict, latencies: dict[str, list[float]], run_dir: Path) -> None:
    """Write results.json, latency.json (every timed run, per row) and report.md."""
    write_json(run_dir / "results.json", results)
    write_json(run_dir / "latency.json", {"unit": "ms", "rows": latencies})
    (run_dir / "report.md").write_text(markdown(results))
    try:  # the HTML page is a view: a plotting problem must never cost the results above
        from edgekit import html_report

        html_report.write(results, run_dir, latencies)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: report.html not written: {type(exc).__name__}: {exc}; "
              f"retry with: edgekit report {run_dir}", file=sys.stderr)


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def human_ms(ms: float) -> str:
    """A latency with a unit that keeps three significant digits (us below 1 ms)."""
    return f"{ms * 1000:.3g} us" if ms < 1 else f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def cells(results: dict) -> list[list[str]]:
    """One list of display strings per row, in COLUMNS order."""
    metric = results["primary_metric"]
    out = []
    for row in results["rows"]:
        value = row["metrics"].get(metric)
        delta = row["delta"].get(metric)
        lat = row["latency_ms"]
        speedup = row["speedup_vs_baseline"]
        if row["status"] == "ok":
            status = "; ".join(row["notes"]) or "ok"
        else:
            status = f"{row['status']}: {row['reason']}"
        out.append([
            row["id"],
            row["format"],
            row["precision"],
            human_size(row["size_bytes"]),
            human_size(row.get("gzip_bytes")),
            _percent((row.get("weights") or {}).get("sparsity")),
            f"{value:.4f}" if value is not None else "-",
            f"{delta:+.4f}" if delta is not None else "-",
            human_ms(lat["p50"]) if lat else "-",
            f"{speedup:.2f}x" if speedup else "-",
            status,
        ])
    return out


def _percent(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def not_produced_line(results: dict) -> str | None:
    """One short line on the format/precision pairs that were not built, and why."""
    missing: dict[str, set[str]] = {}
    qat_models: list[str] = []
    for item in results.get("not_produced", []):
        if "QAT" in item["reason"]:
            qat_models += [item["model"]] if item["model"] not in qat_models else []
        else:
            missing.setdefault(item["format"], set()).add(item["precision"])
    parts = [f"{fmt} has no {'/'.join(sorted(p))} converter" for fmt, p in missing.items()]
    if qat_models:
        parts.append(f"QAT models ({', '.join(qat_models)}) are exported at int8 only")
    return f"not produced: {'; '.join(parts)}" if parts else None


def speedup_line(results: dict) -> str:
    """Which row the speedup column is relative to (the GPU baseline when it was timed)."""
    row = results.get("speedup_baseline") or results["baseline"]
    if row.startswith("keras-fp32@"):
        where = {"gpu": "GPU", "cpu": "CPU"}.get(row.rsplit("@", 1)[-1], row.rsplit("@", 1)[-1])
        return f"speedup = p50 of {row} ({where} fp32) / row p50"
    return f"speedup = p50 of {row} / row p50"


def target_cells(results: dict) -> list[list[str]]:
    """The header and one line per variant with its p50 on every target, side by side; empty
    when only one target was measured."""
    by_target = results.get("latency_by_target") or {}
    targets = list(dict.fromkeys(t for per in by_target.values() for t in per))
    if len(targets) < 2:
        return []
    # Devices say what they ran on (e.g. tflite_runtime 2.14.0); cpu and gpu run several runtimes.
    runtimes = {t: ", ".join(sorted({per[t]["runtime"] for per in by_target.values()
                                     if t in per and per[t]["status"] == "ok" and per[t]["runtime"]})) for t in targets}
    header = ["variant", *(f"{t} ({runtimes[t]})" if runtimes[t] and t not in ("cpu", "gpu") else t for t in targets)]
    lines = []
    for stem, per in by_target.items():
        line = [stem]
        for t in targets:
            cell = per.get(t)
            line.append("-" if cell is None else human_ms(cell["p50"]) if cell["p50"] is not None else cell["status"])
        lines.append(line)
    return [header, *lines]


def markdown(results: dict) -> str:
    env = results["environment"]
    metric = results["primary_metric"]
    header = [c.replace("metric", metric).replace("delta", f"Δ {metric}") for c in COLUMNS]
    lines = [
        f"# edgekit report: {results['recipe']['name']}",
        "",
        f"- baseline: `{results['baseline']}` (Keras fp32, timed as a tf.function call at batch 1); {speedup_line(results)}",
        f"- data: {results['data']['source']}, test split {results['data']['splits']['test']} samples, "
        f"calibration {results['data']['calibration']['size']} samples from the {results['data']['calibration']['source']} split",
        f"- model: {results['model']['source']}, {results['model']['parameters']} parameters",
        f"- benchmark: batch 1, {results['benchmark']['threads']} thread(s), {results['benchmark']['warmup']} warm-up runs, "
        f"at least {results['benchmark']['runs']} timed runs over {results['benchmark']['inputs']} fixed inputs",
        f"- machine: {env['cpu']} ({', '.join(env['isa']) or 'no ISA flags read'}), Python {env['python']}",
        f"- build time: {results['build_seconds']} s",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells(results)]
    if side_by_side := target_cells(results):
        header, *rows = side_by_side
        lines += ["", "p50 latency by target:", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    if skipped := not_produced_line(results):
        lines += ["", skipped]
    lines += [
        "",
        "Sparsity is the share of zero weights read back from the artifact file; gzip is its size after gzip -9.",
        "Latency (p50) is per batch-1 inference; speedup is the baseline's p50 over the row's p50.",
        f"Δ {metric} is the row's {metric} minus the baseline's, on the same test split.",
        "",
        "## Packages",
        "",
    ]
    lines += [f"- {name} {version}" for name, version in env["packages"].items()]
    return "\n".join(lines) + "\n"


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
    dropped += ("gzip", "sparsity") if console.width < 110 else ()
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
    if skipped := not_produced_line(results):
        console.print(skipped)
