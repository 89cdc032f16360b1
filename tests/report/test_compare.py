"""`edgekit compare RUN_A RUN_B`: what changed per row, the p50 verdict from the rounds' interval,
and --fail-on exit codes for CI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.report import compare


def _timed(row: dict, rounds: list[float]) -> dict:
    p50 = sorted(rounds)[len(rounds) // 2]
    return {**row, "latency_ms": {**(row.get("latency_ms") or {}), "p50": p50},
            "timing": {"rounds": len(rounds), "round_p50_ms": rounds, "unstable": False}}


def _write(tmp_path, name: str, doc: dict):
    path = tmp_path / name / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    return path.parent


@pytest.fixture
def two_runs(tiny_run, tmp_path):
    """Run A: the tiny build; run B: the same with tflite-int8 significantly slower and worse,
    onnx-int8 failed, one row gone."""
    a = tiny_run.results
    b = json.loads(json.dumps(a))
    rows = {row["id"]: row for row in b["rows"]}
    a_rows = {row["id"]: row for row in a["rows"]}
    a_rows["tflite-int8@cpu"].update(_timed(a_rows["tflite-int8@cpu"], [1.0, 1.01, 0.99, 1.0, 1.02]))
    rows["tflite-int8@cpu"].update(_timed(rows["tflite-int8@cpu"], [2.0, 2.02, 1.98, 2.0, 2.01]))
    rows["tflite-int8@cpu"]["metrics"]["accuracy"] -= 0.05
    rows["onnx-int8@cpu"].update(status="failed", reason="conversion failed: boom", latency_ms=None)
    gone = "openvino-fp32@cpu"
    b["rows"] = [row for row in b["rows"] if row["id"] != gone]
    return _write(tmp_path, "a", a), _write(tmp_path, "b", b), gone


def test_compare_shows_each_change_with_its_verdict(two_runs):
    a, b, gone = two_runs
    result = CliRunner().invoke(cli, ["compare", str(a), str(b / "results.json")])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if "@" in line.split()[0]}
    assert "slower" in lines["tflite-int8@cpu"] and "2.00x [" in lines["tflite-int8@cpu"]
    assert "(-0.0500)" in lines["tflite-int8@cpu"]
    assert "ok -> failed" in lines["onnx-int8@cpu"]
    assert "ok -> missing" in lines[gone]
    assert "keras-fp32@cpu" in lines and "->" not in lines["keras-fp32@cpu"]
    assert "no --fail-on budget" in result.output


@pytest.mark.parametrize("budgets, failing", [
    (["metric=0.01"], ["tflite-int8@cpu: accuracy"]),
    (["p50=1.5"], ["tflite-int8@cpu: p50 2.00x"]),
    (["status"], ["onnx-int8@cpu: status ok -> failed", "openvino-fp32@cpu: status ok -> missing"]),
])
def test_fail_on_exits_1_and_names_the_rows(two_runs, budgets, failing):
    a, b, _ = two_runs
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), *[x for budget in budgets for x in ("--fail-on", budget)]])
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and all(f in error[0] for f in failing), error


def test_budgets_that_hold_exit_0(two_runs):
    a, b, _ = two_runs
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--fail-on", "metric=0.1", "--fail-on", "p50=3",
                                      "--fail-on", "size=1.01"])
    assert result.exit_code == 0, result.output
    assert "every --fail-on budget holds" in result.output


def test_no_verdict_without_rounds_or_when_unstable(tiny_run):
    row = dict(tiny_run.results["rows"][1], status="ok", latency_ms={"p50": 1.0}, timing=None)
    slower = dict(row, latency_ms={"p50": 1.3})
    assert compare.p50_ratio(row, slower)[2] == "one round: no interval"
    shaky = _timed(row, [1.0, 1.5, 0.7])
    shaky["timing"]["unstable"] = True
    assert compare.p50_ratio(shaky, _timed(row, [1.3, 1.31, 1.29]))[2].startswith("unstable")


@pytest.mark.parametrize("budget", ["latency=2", "p50=", "p50=-1", "metric=nan"])
def test_bad_fail_on_is_one_line_exit_2(two_runs, budget):
    a, b, _ = two_runs
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "--fail-on", budget])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "--fail-on" in result.output
