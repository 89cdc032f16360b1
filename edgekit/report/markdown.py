"""report.md: the results table and the run's settings as markdown."""

from __future__ import annotations

from edgekit.report import devices
from edgekit.report.cells import (
    COLUMNS,
    cells,
    not_produced_line,
    output_cells,
    speedup_line,
    target_cells,
)
from edgekit.report.contract import markdown_lines as contract_lines


def outputs_table(results: dict) -> list[str]:
    """A model of several outputs: each row's primary metric per output (``cells.output_cells``);
    nothing for a model of one output."""
    table = output_cells(results)
    if not table:
        return []
    header, *rows = table
    lines = ["", "Each output on its own (* the row's metric: the worst output of the recipe's task):", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


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
    from edgekit.report.flags import summary_lines

    lines += [f"\n**{line}**" for line in summary_lines(results)]
    if side_by_side := target_cells(results):
        header, *rows = side_by_side
        lines += ["", "p50 latency by target:", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += outputs_table(results)
    lines += contract_lines(results)
    if skipped := not_produced_line(results):
        lines += ["", skipped]
    if relied := devices.table(results):
        header, *rows = relied
        lines += ["", "## Devices, clocks and temperatures", "",
                  "Which device timed each row, its CPU clock, governor and hottest zone around the rounds "
                  "(/sys), the tries before it and the waits for the temperature.", "",
                  "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        if fleet := devices.fleet_lines(results):
            lines += ["", *(f"- {line}" for line in fleet)]
    lines += [
        "",
        "Sparsity is the share of zero weights read back from the artifact file; gzip is its size after gzip -9.",
        "Latency (p50) is per batch-1 inference, over all runs; the rows of a target are timed together in "
        "interleaved rounds, shuffled per round. Speedup is the baseline's p50 over the row's p50; [lo-hi] is its "
        "95% interval from the rounds (Student's t on the log ratios of paired rounds).",
        f"Δ {metric} is the row's {metric} minus the baseline's, on the same test split.",
        "mem is the row's peak resident-memory growth while its model is loaded and run, in a fresh process "
        "(results.json `memory`); report.html shows where each row's time goes and, for int8 rows, the layers "
        "that lose most to quantization.",
        "",
        "## Packages",
        "",
    ]
    lines += [f"- {name} {version}" for name, version in env["packages"].items()]
    return "\n".join(lines) + "\n"
