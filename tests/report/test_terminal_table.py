"""The results table for the terminal it is printed to: at 80, 120 and 200 columns every row's
status is on its line and every note and reason follows the table, numbered; no number is cut;
piped output keeps each note on one line; --format gives scripts plain, markdown and json."""

from __future__ import annotations

import copy
import io
import json
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from edgekit.cli import cli
from edgekit.report import terminal
from edgekit.report.cells import COLUMNS, cells


@pytest.fixture(scope="module")
def crowded(tiny_run) -> dict:
    """The tiny build's results with every kind of note a row carries now: a loss flag, a
    suspect baseline, clocks, a long failure reason, a skipped row, several notes on one row."""
    results = copy.deepcopy(tiny_run.results)
    rows = results["rows"]
    rows[0]["notes"] = ["suspect: accuracy 0.9722 is not above the majority class of the test split (0.1000, "
                        "95% interval reaches 0.0950); inputs scaled twice or labels in another order?"]
    rows[1]["notes"] = ["governor powersave on cpu0, cpu1: time with the performance governor",
                        "CPU clock moved by 18% between rounds (2.1-2.5 GHz): the timing may mix two speeds"]
    rows[2]["notes"] = [*rows[2]["notes"], "loss: accuracy -0.0420 against keras-fp32@cpu (past 1 point)",
                        "output box: mae 0.31 vs 0.12 in keras-fp32@cpu; output cls: accuracy 0.9700"]
    rows[3].update(status="failed", reason="runtime failed: onnxruntime 1.32.0 raised "
                   "[ONNXRuntimeError] : 10 : INVALID_GRAPH : This is an invalid model. Type Error: Type "
                   "'tensor(int8)' of input parameter (x) of operator (Conv) in node (conv_1) is invalid.",
                   latency_ms=None, speedup_vs_baseline=None, speedup_vs_baseline_ci95=None, memory=None)
    rows[4].update(status="skipped", reason="bf16 needs avx512_bf16 or amx_bf16; this CPU has neither",
                   latency_ms=None, speedup_vs_baseline=None, speedup_vs_baseline_ci95=None, memory=None)
    return results


def _render(results: dict, width: int, terminal_: bool = True) -> str:
    console = Console(width=width, file=io.StringIO(), force_terminal=terminal_, color_system=None)
    terminal.print_table(results, console)
    return console.file.getvalue()


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("width", [80, 120, 200])
def test_no_status_or_note_is_lost_at_any_width(crowded, width):
    out = _render(crowded, width)
    lines = out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width
    status, notes = terminal.footnotes(crowded)
    assert len(notes) == sum(1 for row in crowded["rows"] if terminal.notes_of(row))
    for row, cell in zip(crowded["rows"], status):
        line = next(line for line in lines if line.lstrip().startswith(row["id"] + " "))
        assert line.rstrip().endswith(cell), (row["id"], line)  # the status, whole, on the row's own line
    flat = _flat(out)
    for number, row_id, texts in notes:
        assert _flat(f"[{number}] {row_id}: {texts[0]}") in flat
        for text in texts[1:]:
            assert _flat(text) in flat
    # every column shown has each of its cells whole on its row's line: no number is cut
    header = next(line for line in lines if line.lstrip().startswith("id "))
    kept, short = terminal.fit_columns(crowded, status, width)
    shown = [c for c in kept if c not in ("id", terminal.STATUS)]
    for row, values in zip(crowded["rows"], cells(crowded)):
        line = next(line for line in lines if line.lstrip().startswith(row["id"] + " "))
        for column in shown:
            value = values[COLUMNS.index(column)]
            value = value.split(" [", 1)[0] if column == "speedup" and short else value
            assert value in line, (width, column, value, line)
    assert ("accuracy" in header) and ("mem" in header) == (width >= 120)
    assert ("format" in header) == (width >= 200)


def test_a_pipe_gets_each_footnote_on_one_line(crowded):
    out = _render(crowded, 120, terminal_=False)
    failed = next(line for line in out.splitlines() if line.startswith("[") and "onnx-fp32@cpu: failed" in line)
    assert failed.endswith("in node (conv_1) is invalid.")  # one line, however long


def test_formats_for_scripts(crowded):
    plain = terminal.render(crowded, "plain").splitlines()
    assert len(plain) == 1 + len(crowded["rows"]) and all(len(line.split("\t")) == len(COLUMNS) for line in plain)
    assert plain[4].split("\t")[-1].startswith("failed: runtime failed: onnxruntime")
    doc = json.loads(terminal.render(crowded, "json"))
    assert [r["id"] for r in doc["rows"]] == [r["id"] for r in crowded["rows"]]
    assert doc["rows"][2]["notes"][-1].startswith("output box:") and doc["rows"][0]["p50_ms"] > 0
    markdown = terminal.render(crowded, "markdown")
    assert (sum(line.startswith("| ") for line in markdown.splitlines()) == len(crowded["rows"]) + 1
            and "speedup = p50 of keras-fp32@cpu" in markdown)


def test_build_format_json_is_json_alone_on_stdout(tiny_run, tmp_path):
    """A cached rebuild (the tiny build's cache): the table on stdout is JSON, every other line on stderr."""
    done = CliRunner(env={"EDGEKIT_CACHE_DIR": str(tiny_run.dir.parent / "cache")}).invoke(
        cli, ["build", str(tiny_run.recipe), "--out", str(tmp_path / "run"), "--format", "json"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert [r["status"] for r in doc["rows"]] == [r["status"] for r in tiny_run.results["rows"]]
    assert re.search(r"^results: .*results\.json", done.stderr, re.M)


def test_the_latency_by_target_table_splits_into_parts_that_fit_and_cuts_no_name(crowded):
    """Ten devices side by side in 100 columns: the targets go into several tables, each with the
    variant column, and every device name with its runtime is printed whole."""
    results = copy.deepcopy(crowded)
    names = [f"device-{i} (tflite_runtime 2.14.0)" for i in range(10)]
    results["latency_by_target"] = {
        row["id"].split("@")[0]: {name: {"p50": 0.0012 * (i + 1), "status": "ok", "runtime": None}
                                  for i, name in enumerate(names)} for row in results["rows"]}
    lines = terminal.target_cells(results)
    parts = terminal.column_groups(lines, 100)
    assert len(parts) > 1 and [h for part in parts for h in part[0][1:]] == lines[0][1:]
    assert all(part[0][0] == "variant" and len(part) == len(lines) for part in parts)
    out = io.StringIO()
    terminal._print_rich(results, Console(file=out, width=100, soft_wrap=False))
    text = out.getvalue()
    assert all(name in text for name in names) and "…" not in text.split("p50 latency by target")[1].split("baseline:")[0]
