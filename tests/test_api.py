"""The Python API (edgekit.api): load, Results (rows, to_pandas, best), check and bench on the
shared tiny build; `import edgekit` stays light. The build itself through the API runs in
tests/pipeline/test_build_log.py (a fresh process, from a dict)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import edgekit
from edgekit.api import Results


def test_import_edgekit_imports_no_framework_and_exports_the_api():
    code = ("import sys, edgekit; api = [edgekit.build, edgekit.load, edgekit.check, edgekit.bench, edgekit.Results]; "
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'pandas', 'onnxruntime', 'openvino') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    with pytest.raises(AttributeError):
        edgekit.no_such_function  # noqa: B018


def test_load_a_run_directory_or_its_results_json(tiny_run):
    by_dir, by_file = edgekit.load(tiny_run.dir), edgekit.load(tiny_run.dir / "results.json")
    assert by_dir.results == by_file.results == tiny_run.results
    assert by_dir.run_dir == by_file.run_dir == tiny_run.dir
    assert [row["id"] for row in by_dir.rows] == [row["id"] for row in tiny_run.results["rows"]]
    assert by_dir.failed == [] and by_dir.baseline["id"] == tiny_run.results["baseline"]


def test_to_pandas_one_line_per_row(tiny_run):
    pytest.importorskip("pandas")
    frame = edgekit.load(tiny_run.dir).to_pandas()
    assert list(frame.index) == [row["id"] for row in tiny_run.results["rows"]]
    assert {"format", "precision", "status", "size_bytes", "accuracy", "p50_ms", "speedup"} <= set(frame.columns)


def _row(row_id: str, p50: float, value: float, base: float, status: str = "ok", target: str = "cpu") -> dict:
    return {"id": row_id, "status": status, "target": target, "latency_ms": {"p50": p50},
            "metrics": {"mae": value}, "delta": {"mae": value - base}}


def test_best_is_the_fastest_row_within_the_budget_for_a_lower_is_better_metric():
    # mae: lower is better, so a row may be at most max_drop *higher* than the baseline's 1.0
    rows = [_row("keras-fp32@cpu", 5.0, 1.0, 1.0), _row("tflite-int8@cpu", 1.0, 1.5, 1.0),
            _row("tflite-fp16@cpu", 2.0, 1.05, 1.0), _row("onnx-int8@cpu", 0.5, 0.9, 1.0, status="failed"),
            _row("tflite-int8@pi", 0.1, 1.0, 1.0, target="pi")]
    result = Results({"primary_metric": "mae", "higher_is_better": False, "baseline": "keras-fp32@cpu", "rows": rows})
    assert result.best(max_drop=0.1)["id"] == "tflite-fp16@cpu"  # int8 is faster but 0.5 worse
    assert result.best(max_drop=1.0)["id"] == "tflite-int8@cpu"  # failed rows never count
    assert result.best(max_drop=0.0)["id"] == "keras-fp32@cpu"
    assert result.best(max_drop=0.1, target="pi")["id"] == "tflite-int8@pi"
    assert result.best(max_drop=0.1, target="gpu") is None
    assert [r["id"] for r in result.failed] == ["onnx-int8@cpu"]
    assert result.drop(rows[1]) == pytest.approx(0.5)


def test_best_for_accuracy_on_the_tiny_build(tiny_run):
    result = edgekit.load(tiny_run.dir)
    best = result.best(max_drop=0.05)
    assert best is not None and best["status"] == "ok" and best["target"] == "cpu"
    within = [r for r in result.rows if r["status"] == "ok" and r["latency_ms"] and result.drop(r) is not None
              and result.drop(r) <= 0.05]
    assert best["latency_ms"]["p50"] == min(r["latency_ms"]["p50"] for r in within)


def test_check_returns_the_report(tiny_run, tmp_path):
    report = edgekit.check(tiny_run.dir, junit=tmp_path / "junit.xml")
    assert report.passed and not report.failures and report.outcomes
    assert (tmp_path / "junit.xml").read_text().count("<testcase") == len(report.outcomes)
    # a budget the run cannot hold: the same verdict `edgekit check` exits 1 for
    strict = tmp_path / "strict.yaml"
    strict.write_text(tiny_run.recipe.read_text().split("check:")[0]
                      + "check:\n  rules:\n    - rows: \"tflite-*\"\n      max_size_bytes: 10\n")
    failed = edgekit.check(edgekit.load(tiny_run.dir), recipe=strict)
    assert not failed.passed and {o.budget for o in failed.failures} == {"size bytes"}


def test_bench_files_reads_each_precision_from_the_artifact(tiny_run, tmp_path):
    artifacts = sorted((tiny_run.dir / "artifacts").glob("tflite-*.tflite"))
    assert artifacts
    result = edgekit.bench(artifacts, runs=3, warmup=1, samples=2, profile=False, out=tmp_path / "bench.json",
                           log=lambda line: None)
    by_file = {row["id"].split("@")[0]: row for row in result.rows}
    for path in artifacts:
        assert by_file[path.name]["precision"] == path.stem.split("-", 1)[1], path.name  # tflite-int8 -> int8
    assert result.best(max_drop=None)["status"] == "ok"
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["precision"] != "-"
    assert result.run_dir == tmp_path


def test_report_accepts_a_run_directory_or_its_results_json(tiny_run, tmp_path):
    from click.testing import CliRunner

    from edgekit.cli import cli

    run = tmp_path / "run"
    shutil.copytree(tiny_run.dir, run)
    for arg in (run, run / "results.json"):
        result = CliRunner().invoke(cli, ["report", str(arg)])
        assert result.exit_code == 0, result.output
        assert f"report: {run / 'report.html'}" in result.output
    bad = CliRunner().invoke(cli, ["report", str(run / "latency.json")])
    assert bad.exit_code == 2 and "expected a run directory or its results.json" in bad.output


def test_schema_shows_the_defaults_made_by_a_factory():
    from click.testing import CliRunner

    from edgekit.cli import cli

    schema = json.loads(CliRunner().invoke(cli, ["schema"]).output)
    assert schema["properties"]["targets"]["default"] == ["cpu"]
    assert schema["$defs"]["QuantizeSpec"]["properties"]["precisions"]["default"] == ["fp32", "int8"]
    assert "tflite" in schema["$defs"]["ExportSpec"]["properties"]["formats"]["default"]
