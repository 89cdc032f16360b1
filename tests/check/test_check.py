"""`edgekit check` and `edgekit baseline save` on the session's real tiny run (whose recipe has
the check: section TINY_CHECK), with regressions injected into copies of its results.json."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from edgekit.check.budgets import CheckSpec
from edgekit.check.gate import compare
from edgekit.cli import cli
from edgekit.errors import RecipeError
from edgekit.recipe.schema import load_recipe
from tests.conftest import TINY_RECIPE, real_row

INT8, FP32 = "tflite-int8@cpu", "tflite-fp32@cpu"


#: per-round p50s of a quiet machine, relative to the row's p50 (1% spread)
QUIET_ROUNDS = (1.0, 1.01, 0.99, 1.015, 0.985)


def _quiet(row, shift=0, rounds=QUIET_ROUNDS):
    """Give ``row`` the rounds of a quiet machine (``shift`` rotates them, so that two rows'
    rounds do not move in step): these tests are about the gate's logic, and the tiny build's
    own 4-run rounds on a busy test machine are too noisy to carry a verdict."""
    if row.get("latency_ms"):
        p50 = row["latency_ms"]["p50"]
        turned = rounds[shift % len(rounds):] + rounds[:shift % len(rounds)]
        row["timing"] = {"rounds": len(rounds), "round_p50_ms": [p50 * r for r in turned], "interleaved": True,
                         "spread": 0.011, "unstable": False}


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """The shared tiny build (its recipe has a check: section) with quiet timing rounds, and a
    baseline saved from it."""
    folder = tmp_path_factory.mktemp("check")
    results = copy.deepcopy(tiny_run.results)
    for i, row in enumerate(results["rows"]):
        _quiet(row, i)
    (folder / "run").mkdir()
    (folder / "run" / "results.json").write_text(json.dumps(results))
    (folder / "run" / "recipe.yaml").write_text((tiny_run.dir / "recipe.yaml").read_text())
    baseline = folder / "baseline.json"
    saved = CliRunner().invoke(cli, ["baseline", "save", str(folder / "run"), str(baseline)])
    assert saved.exit_code == 0, saved.output
    return {"dir": folder / "run", "recipe": tiny_run.recipe, "baseline": baseline, "results": results}


def _variant(run, tmp_path, change) -> str:
    """A copy of the run's results.json (and recipe.yaml) with ``change(results, rows_by_id)`` applied."""
    results = copy.deepcopy(run["results"])
    change(results, {row["id"]: row for row in results["rows"]})
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "recipe.yaml").write_text((run["dir"] / "recipe.yaml").read_text())
    return str(tmp_path / "results.json")


def _check(results, *args, env=None):
    return CliRunner(env=env).invoke(cli, ["check", str(results), *map(str, args)])


def _lines(output, row_id, result):
    return [line for line in output.splitlines() if line.startswith(row_id + " ") and f" {result} " in line + " "]


def _scale_latency(row, factor):
    row["latency_ms"] = {k: (v * factor if k != "runs" else v) for k, v in row["latency_ms"].items()}
    if row.get("timing"):
        row["timing"]["round_p50_ms"] = [v * factor for v in row["timing"]["round_p50_ms"]]


def test_same_run_passes_and_prints_every_budget(run):
    result = _check(run["dir"] / "results.json", "--baseline", run["baseline"])
    assert result.exit_code == 0, result.output
    assert "check passed" in result.output and "FAIL" not in result.output
    for row_id in ("keras-fp32@cpu", FP32, INT8):
        assert _lines(result.output, row_id, "pass"), result.output
    # The rules from the recipe copy beside results.json were used: int8's own limit, a size budget.
    assert any("0.0800" in line for line in _lines(result.output, INT8, "pass"))
    assert any("size bytes" in line for line in _lines(result.output, FP32, "pass"))
    assert "latency ratio regression vs stored  1.000x" in result.output


def test_injected_accuracy_drop_fails_and_names_the_row(run, tmp_path):
    def drop(results, rows):
        rows[INT8]["metrics"]["accuracy"] -= 0.1
        rows[INT8]["delta"]["accuracy"] -= 0.1

    result = _check(_variant(run, tmp_path, drop), "--baseline", run["baseline"])
    assert result.exit_code == 1, result.output
    failing = _lines(result.output, INT8, "FAIL")
    assert any("accuracy drop vs keras-fp32@cpu" in line for line in failing)
    assert any("accuracy drop vs stored" in line and "0.1000" in line for line in failing)
    assert not _lines(result.output, FP32, "FAIL")
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and INT8 in error[0]


def test_injected_latency_ratio_regression_fails(run, tmp_path):
    result = _check(_variant(run, tmp_path, lambda _, rows: _scale_latency(rows[INT8], 1.6)), "--baseline", run["baseline"])
    assert result.exit_code == 1, result.output
    [line] = _lines(result.output, INT8, "FAIL")
    assert "latency ratio regression vs stored  1.600x  1.250x" in line and "growth 95% interval" in line
    assert f"vs {FP32}" in line  # an int8 row is timed against its fp32 sibling
    assert "Error: 1 of" in result.output and INT8 in result.output.splitlines()[-1]
    # the fp32 row itself has no sibling: by default its ratio budget is not judged
    [line] = [line for line in _lines(result.output, FP32, "skip") if "latency ratio" in line]
    assert "latency_reference: baseline" in line


def test_slower_machine_does_not_fail_but_absolute_budget_does(run, tmp_path):
    def slower(_, rows):  # every row 3x slower: the in-run ratios are unchanged
        for row in rows.values():
            _scale_latency(row, 3.0)

    results = _variant(run, tmp_path, slower)
    assert _check(results, "--baseline", run["baseline"]).exit_code == 0
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(TINY_RECIPE + "check:\n  rules:\n    - {rows: 'tflite-*', max_latency_abs_regression: 1.5}\n")
    result = _check(results, "--baseline", run["baseline"], "--recipe", pinned)
    assert result.exit_code == 1
    assert len(_lines(result.output, FP32, "FAIL")) == 1 and "same pinned device only" in result.output


def test_better_run_passes(run, tmp_path):
    def better(_, rows):
        for row_id in (FP32, INT8):
            rows[row_id]["metrics"]["accuracy"] = min(1.0, rows[row_id]["metrics"]["accuracy"] + 0.01)
        _scale_latency(rows[INT8], 0.5)

    result = _check(_variant(run, tmp_path, better), "--baseline", run["baseline"])
    assert result.exit_code == 0, result.output
    assert "latency ratio regression vs stored  0.500x" in result.output


def test_row_ok_in_baseline_but_failed_now_fails(run, tmp_path):
    def broken(_, rows):
        rows[INT8].update(status="failed", reason="conversion failed: RuntimeError: boom", latency_ms=None,
                          metrics={}, delta={}, speedup_vs_baseline=None)

    result = _check(_variant(run, tmp_path, broken), "--baseline", run["baseline"])
    assert result.exit_code == 1
    [line] = _lines(result.output, INT8, "FAIL")
    assert "status" in line and "boom (was ok)" in line


def test_row_missing_from_results_fails(run, tmp_path):
    result = _check(_variant(run, tmp_path, lambda r, _: r["rows"].remove(next(row for row in r["rows"] if row["id"] == INT8))),
                    "--baseline", run["baseline"])
    assert result.exit_code == 1
    assert "missing" in _lines(result.output, INT8, "FAIL")[0]


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda doc: "{not json", "baseline is not valid JSON"),
        (lambda doc: [], "expected a JSON object"),
        (lambda doc: {**doc, "results": {k: v for k, v in doc["results"].items() if k != "rows"}}, "missing key(s): rows"),
        (lambda doc: {**doc, "version": 99}, "version 99; re-save it with `edgekit baseline save`"),
        (lambda doc: {**doc["results"], "recipe": {"name": "other"}}, "baseline is for recipe 'other' but the results are for 'tiny'"),
        (lambda doc: {**doc["results"], "primary_metric": "auc"}, "baseline task metric is 'auc'"),
        (lambda doc: {**doc["results"], "rows": [{"id": "x@cpu", "status": "ok"}]}, "shares no row id"),
        (lambda doc: {**doc["results"], "rows": [{**doc["results"]["rows"][0], "metrics": {"accuracy": "high"}}]},
         "rows[0] (keras-fp32@cpu): metrics: expected an object of numbers"),
    ],
)
def test_malformed_or_mismatched_baseline_exits_2(run, tmp_path, mutate, fragment):
    changed = mutate(json.loads(run["baseline"].read_text()))
    bad = tmp_path / "bad.json"
    bad.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    result = _check(run["dir"] / "results.json", "--baseline", bad)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in result.output


def test_missing_results_exits_2(tmp_path):
    result = _check(tmp_path / "nope.json")
    assert result.exit_code == 2 and "results not found" in result.output


def test_junit_and_github_step_summary(run, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    results = _variant(run, tmp_path, lambda _, rows: rows[INT8]["metrics"].update(accuracy=0.1))
    result = _check(results, "--baseline", run["baseline"], "--junit", tmp_path / "junit.xml",
                    env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    failed = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert int(suite.get("failures")) == len(failed) == 2
    assert {case.get("classname") for case in failed} == {INT8}
    text = summary.read_text()
    assert text.startswith("earlier step\n## edgekit check ❌ failed")
    assert f"| `{INT8}` | accuracy drop vs stored |" in text and "❌ **FAIL**" in text


def test_recipe_and_toolchain_changes_warn(run, tmp_path):
    def drift(results, _):
        results["recipe"]["sha256"] = "0" * 64
        results["environment"]["packages"]["tensorflow"] = "9.9.9"

    result = _check(_variant(run, tmp_path, drift), "--baseline", run["baseline"])
    assert result.exit_code == 0, result.output
    assert "warning: recipe differs from the baseline's" in result.output
    assert "warning: toolchain differs" in result.output and "-> 9.9.9" in result.output


def test_without_baseline_only_in_run_budgets(run):
    result = _check(run["dir"], "--recipe", run["recipe"])
    assert result.exit_code == 0, result.output
    assert "warning: no --baseline" in result.output and "vs stored" not in result.output
    assert _lines(result.output, INT8, "pass")


def test_baseline_file_records_recipe_hash_and_environment(run):
    doc = json.loads(run["baseline"].read_text())
    assert doc["format"] == "edgekit-baseline" and doc["version"] == 1
    assert doc["recipe"]["sha256"] == run["results"]["recipe"]["sha256"]
    assert doc["environment"]["packages"]["tensorflow"] and "max_size_bytes" in doc["recipe_yaml"]
    assert doc["results"]["rows"] == run["results"]["rows"]


def test_rules_override_defaults_by_glob_in_order():
    spec = CheckSpec.model_validate({
        "defaults": {"max_metric_drop": 0.02},
        "rules": [{"rows": "*-int8@*", "max_metric_drop": 0.05, "max_latency_ratio_regression": None},
                  {"rows": "onnx-int8@cpu", "max_metric_drop": 0.1}],
    })
    assert spec.budget_for("tflite-fp32@cpu").max_metric_drop == 0.02
    assert spec.budget_for("tflite-fp32@cpu").max_latency_ratio_regression == 1.25  # untouched default
    int8 = spec.budget_for("tflite-int8@cpu")
    assert int8.max_metric_drop == 0.05 and int8.max_latency_ratio_regression is None  # null turns it off
    assert spec.budget_for("onnx-int8@cpu").max_metric_drop == 0.1  # the later rule wins
    assert spec.unmatched_rules(["tflite-fp32@cpu"]) == ["*-int8@*", "onnx-int8@cpu"]


@pytest.mark.parametrize(
    "section, fragment",
    [
        ("check: {rules: [{rows: '*', max_metric_dorp: 0.1}]}",
         'check.rules[0].max_metric_dorp: unknown key (did you mean "max_metric_drop"?)'),
        ("check: {defaults: {max_latency_ratio_regression: 0.9}}",
         "check.defaults.max_latency_ratio_regression: expected greater than or equal to 1"),
        ("check: {rules: [{max_size_bytes: 10}]}", "check.rules[0].rows: required field is missing"),
    ],
)
def test_bad_check_section_is_one_line(write_recipe, section, fragment):
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(f"name: m\nmodel: {{arch: mlp}}\n{section}\n"))
    assert fragment in info.value.message and info.value.exit_code == 2


# --------------------------------------------------------------------------- the gate never passes on garbage

NAN, INF = float("nan"), float("inf")
BASE = "keras-fp32@cpu"


def _error(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("Error:")]
    return line


def _set_p50(row, value):
    row["latency_ms"]["p50"] = value


@pytest.mark.parametrize(
    "change, budget, reason",
    [
        (lambda rows: rows[INT8]["metrics"].update(accuracy=NAN), "accuracy drop vs stored", "accuracy is NaN on this row"),
        (lambda rows: rows[INT8]["metrics"].update(accuracy=INF), "accuracy drop vs keras-fp32@cpu", "accuracy is inf on this row"),
        (lambda rows: _set_p50(rows[INT8], NAN), "latency ratio regression vs stored", "p50 is NaN on this row"),
        # An inf p50 was a ZeroDivisionError traceback.
        (lambda rows: _set_p50(rows[INT8], INF), "latency ratio regression vs stored", "p50 is inf on this row"),
        (lambda rows: _set_p50(rows[INT8], -5.0), "latency ratio regression vs stored", "p50 is -5 (expected > 0) on this row"),
        (lambda rows: _set_p50(rows[INT8], 0.0), "latency ratio regression vs stored", "p50 is 0 (expected > 0) on this row"),
        (lambda rows: rows[BASE]["metrics"].update(accuracy=NAN), "accuracy drop vs keras-fp32@cpu",
         "accuracy is NaN on the baseline row keras-fp32@cpu"),
    ],
    ids=["nan-metric", "inf-metric", "nan-p50", "inf-p50", "negative-p50", "zero-p50", "nan-baseline-row-metric"],
)
def test_non_finite_or_impossible_values_fail_every_budget_that_reads_them(run, tmp_path, change, budget, reason):
    results = _variant(run, tmp_path, lambda _, rows: change(rows))
    result = _check(results, "--baseline", run["baseline"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "check passed" not in result.output
    row = BASE if "baseline row" in reason else INT8
    failing = [line for line in result.output.splitlines() if f" {budget} " in line and "FAIL" in line]
    assert any(line.startswith(INT8 + " ") and reason in line for line in failing), result.output
    # The per-row budget names the field; the summary line carries the reason.
    [values] = [line for line in _lines(result.output, row, "FAIL") if "measured values" in line]
    assert "not a measurement" in values
    assert reason in _error(result.output) or "measured values invalid" in _error(result.output)


def test_nan_metric_fails_without_a_stored_baseline(run, tmp_path):
    results = _variant(run, tmp_path, lambda _, rows: rows[INT8]["metrics"].update(accuracy=NAN))
    result = _check(results)
    assert result.exit_code == 1, result.output
    assert f"{INT8} measured values invalid: metrics.accuracy is NaN" in _error(result.output)
    assert f"{INT8} accuracy drop vs keras-fp32@cpu NaN: accuracy is NaN on this row" in _error(result.output)


def test_nan_p90_alone_fails_the_row(run, tmp_path):
    results = _variant(run, tmp_path, lambda _, rows: rows[FP32]["latency_ms"].update(p90=NAN))
    result = _check(results, "--baseline", run["baseline"])
    assert result.exit_code == 1, result.output
    assert f"{FP32} measured values invalid: latency_ms.p90 is NaN" in _error(result.output)


def _stored_variant(run, tmp_path, change) -> str:
    """A copy of the stored baseline file with ``change(results, rows_by_id)`` applied to its results."""
    doc = json.loads(run["baseline"].read_text())
    change(doc["results"], {row["id"]: row for row in doc["results"]["rows"]})
    path = tmp_path / "stored.json"
    path.write_text(json.dumps(doc))  # json writes NaN and Infinity literals and reads them back
    return str(path)


@pytest.mark.parametrize(
    "change, budget, reason",
    [
        (lambda rows: rows[INT8]["metrics"].update(accuracy=NAN), "accuracy drop vs stored", "accuracy is NaN in the stored baseline"),
        (lambda rows: _set_p50(rows[INT8], NAN), "latency ratio regression vs stored", "p50 is NaN in the stored baseline"),
        # int8 rows are timed against their fp32 row
        (lambda rows: _set_p50(rows[FP32], INF), "latency ratio regression vs stored",
         "p50 is inf on the reference row tflite-fp32@cpu in the stored baseline"),
    ],
    ids=["nan-metric", "nan-p50", "inf-baseline-row-p50"],
)
def test_non_finite_values_in_the_stored_baseline_fail(run, tmp_path, change, budget, reason):
    stored = _stored_variant(run, tmp_path, lambda _, rows: change(rows))
    result = _check(run["dir"] / "results.json", "--baseline", stored)
    assert result.exit_code == 1, result.output
    assert any(f" {budget} " in line and reason in line for line in _lines(result.output, INT8, "FAIL")), result.output
    assert "re-save the baseline" in result.output and "Error:" in result.output


def test_baseline_id_that_names_no_row_fails(run, tmp_path):
    def rename(results, _):
        results["baseline"] = "nope@cpu"

    results = _variant(run, tmp_path, rename)
    stored = _stored_variant(run, tmp_path, rename)  # the same id in both, so the files are comparable
    result = _check(results, "--baseline", stored, "--recipe", _by_baseline(tmp_path))
    assert result.exit_code == 1, result.output
    error = _error(result.output)
    assert error.startswith("Error: ") and "nope@cpu baseline row missing: results: the baseline row is 'nope@cpu'" in error
    assert "stored baseline: the baseline row is 'nope@cpu'" in result.output
    # The budgets that compare with the baseline row fail instead of skipping.
    failing = _lines(result.output, INT8, "FAIL")
    assert any("accuracy drop vs nope@cpu" in line and "the results have no baseline row 'nope@cpu'" in line for line in failing)
    # with latency_reference: baseline, the latency budgets read the baseline row too
    assert any("latency ratio regression vs stored" in line for line in _lines(result.output, FP32, "FAIL"))


def test_stored_baseline_without_its_baseline_row_fails(run, tmp_path):
    stored = _stored_variant(run, tmp_path, lambda results, _: results["rows"].pop(0))
    result = _check(run["dir"] / "results.json", "--baseline", stored, "--recipe", _by_baseline(tmp_path))
    assert result.exit_code == 1, result.output
    assert "stored baseline: the baseline row is 'keras-fp32@cpu' but no row has that id" in _error(result.output)
    [line] = [line for line in _lines(result.output, FP32, "FAIL") if "latency ratio" in line]
    assert "the stored baseline has no baseline row 'keras-fp32@cpu'" in line


def test_primary_metric_that_no_row_has_fails(run, tmp_path):
    def auc(results, _):
        results["primary_metric"] = "auc"

    result = _check(_variant(run, tmp_path, auc), "--baseline", _stored_variant(run, tmp_path, auc))
    assert result.exit_code == 1, result.output
    assert ("results primary metric auc: results: no ok row has the primary metric 'auc' (metrics there: accuracy"
            in _error(result.output))
    assert any("auc drop vs keras-fp32@cpu" in line and "no ok row has the primary metric 'auc'" in line
               for line in _lines(result.output, INT8, "FAIL"))
    # No --baseline: the in-run budgets alone fail too.
    assert _check(_variant(run, tmp_path, auc)).exit_code == 1


def test_results_of_edgekit_bench_have_no_metric_and_still_pass():
    rows = [real_row(name.split(".")[1], "-", p50=p50, size_bytes=10, row_id=f"{name}@cpu", model=name.split(".")[0])
            for name, p50 in (("a.tflite", 1.0), ("b.onnx", 2.0))]
    doc = {"command": "bench", "primary_metric": "metric", "baseline": "a.tflite@cpu", "rows": rows}
    assert [o for o in compare(doc, CheckSpec()) if o.result == "fail"] == []
    doc.pop("command")  # the same file claiming to be a build: its metric is on no row
    assert {o.budget for o in compare(doc, CheckSpec()) if o.result == "fail"} == {"primary metric", "metric drop vs a.tflite@cpu"}


def test_failed_status_reads_as_a_reason_not_a_comparison(run, tmp_path):
    def broken(_, rows):
        rows[INT8].update(status="failed", reason="conversion failed: boom", latency_ms=None, metrics={}, delta={})

    results = _variant(run, tmp_path, broken)
    result = _check(results, "--baseline", run["baseline"], "--junit", tmp_path / "junit.xml")
    assert result.exit_code == 1
    assert f"{INT8} status failed: conversion failed: boom (was ok)" in _error(result.output)
    assert "> ok" not in result.output
    [failure] = ET.parse(tmp_path / "junit.xml").getroot().iter("failure")
    assert failure.get("message") == f"{INT8} status failed: conversion failed: boom (was ok)"
    missing = _variant(run, tmp_path, lambda r, _: r["rows"].remove(next(row for row in r["rows"] if row["id"] == INT8)))
    error = _error(_check(missing, "--baseline", run["baseline"]).output)
    assert f"{INT8} status missing: in the baseline (ok) but not in the results" in error and "> ok" not in error


def test_numeric_failure_still_reads_value_over_limit(run, tmp_path):
    results = _variant(run, tmp_path, lambda _, rows: _scale_latency(rows[INT8], 1.6))
    assert f"{INT8} latency ratio regression vs stored 1.600x > 1.250x" in _error(_check(results, "--baseline", run["baseline"]).output)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"baseline": ' + "1" * 5000 + "}", "results is not valid JSON"),  # past Python's 4300-digit limit
        ("[" * 100_000, "results is not valid JSON"),
    ],
)
def test_unreadable_numbers_or_nesting_exit_2(tmp_path, text, fragment):
    (tmp_path / "results.json").write_text(text)
    result = _check(tmp_path / "results.json")
    assert result.exit_code == 2, result.output
    assert fragment in _error(result.output) and "Traceback" not in result.output


def test_non_string_baseline_id_is_not_a_results_file(run, tmp_path):
    result = _check(_variant(run, tmp_path, lambda results, _: results.update(baseline=["x"])))
    assert result.exit_code == 2, result.output
    assert "baseline: expected a string (a row id or metric name), received ['x']" in _error(result.output)


# --------------------------------------------------------------------------- the build side: rows.py


def _measured(latencies=(1.0, 1.1, 1.2)):
    from edgekit.targets import Measurement

    return Measurement("ok", latencies_ms=list(latencies))


def test_make_row_marks_nan_metrics_failed():
    from edgekit.report.rows import make_row
    from edgekit.variant import Variant

    baseline = Variant(format="keras", precision="fp32", metrics={"accuracy": 0.9})
    variant = Variant(format="tflite", precision="int8", metrics={"accuracy": NAN, "top5_accuracy": 0.99})
    row = make_row("tflite-int8@cpu", variant, "cpu", _measured(), baseline)
    assert row["status"] == "failed"
    assert row["reason"] == "runtime produced NaN accuracy (the artifact outputs NaN or inf on the test split)"
    assert row["metrics"] == {} and row["delta"] == {}  # no NaN literal reaches results.json
    assert row["latency_ms"]["p50"] == pytest.approx(1.1)
    good = make_row("tflite-int8@cpu", Variant(format="tflite", precision="int8", metrics={"accuracy": 0.8}), "cpu",
                    _measured(), baseline)
    assert good["status"] == "ok" and good["delta"]["accuracy"] == pytest.approx(-0.1)
    # Against a NaN baseline metric the row stays ok (its own metric is fine) and its delta is dropped.
    against_nan = make_row("tflite-int8@cpu", Variant(format="tflite", precision="int8", metrics={"accuracy": 0.8}),
                           "cpu", _measured(), Variant(format="keras", precision="fp32", metrics={"accuracy": NAN}))
    assert against_nan["status"] == "ok" and against_nan["delta"] == {} and against_nan["metrics"] == {"accuracy": 0.8}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's own, summarizing inf timings
@pytest.mark.parametrize("latencies, fragment", [((1.0, 2.0, INF), "max inf"), ((NAN,) * 3, "p50 NaN"),
                                                 ((-5.0, -5.0, -5.0), "p50 -5 (expected > 0)")])
def test_make_row_marks_impossible_latencies_failed(latencies, fragment):
    from edgekit.report.rows import make_row
    from edgekit.variant import Variant

    variant = Variant(format="tflite", precision="fp32", metrics={"accuracy": 0.9})
    row = make_row("tflite-fp32@cpu", variant, "cpu", _measured(latencies), variant)
    assert row["status"] == "failed" and row["latency_ms"] is None
    assert row["reason"].startswith("benchmark on cpu produced impossible latencies in ms (") and fragment in row["reason"]


@pytest.mark.parametrize("bad", [0.0, INF, NAN])
def test_add_speedups_never_divides_by_an_impossible_p50(bad):
    from edgekit.report.rows import add_speedups

    def row(fmt, precision, p50):
        return {"id": f"{fmt}-{precision}@cpu", "model": "base", "format": fmt, "precision": precision, "target": "cpu",
                "runtime": fmt, "latency_ms": {"p50": p50}, "notes": [], "speedup_vs_baseline": None}

    rows = [row("keras", "fp32", bad), row("tflite", "fp32", bad), row("tflite", "int8", 1.0)]
    add_speedups(rows)  # a zero or inf p50 was a ZeroDivisionError
    assert [r["speedup_vs_baseline"] for r in rows] == [None, None, None]
    assert "vs_fp32_same_runtime" not in rows[2] and rows[2]["notes"] == []
    rows = [row("keras", "fp32", 2.0), row("tflite", "fp32", bad), row("tflite", "int8", 1.0)]
    add_speedups(rows)
    assert rows[1]["speedup_vs_baseline"] is None and rows[2]["speedup_vs_baseline"] == pytest.approx(2.0)


def test_regression_past_the_limit_but_within_the_noise_passes_as_not_significant(run, tmp_path):
    def noisy(_, rows):  # 1.6x slower, but its rounds ranged from 0.6x to 1.6x of the p50
        _scale_latency(rows[INT8], 1.6)
        p50 = rows[INT8]["latency_ms"]["p50"]
        rows[INT8]["timing"]["round_p50_ms"] = [p50 * r for r in (0.6, 1.6, 0.7, 1.5, 1.0)]

    result = _check(_variant(run, tmp_path, noisy), "--baseline", run["baseline"])
    assert result.exit_code == 0, result.output
    [line] = [line for line in _lines(result.output, INT8, "pass") if "latency ratio" in line]
    assert "1.600x" in line and "not significant (the interval holds 1)" in line


def test_a_check_that_could_not_judge_a_latency_budget_does_not_pass(run, tmp_path):
    """An unstable row is not failed (its numbers cannot carry a verdict), but a gate that judged
    nothing there must not read as a pass: exit 1 and a JUnit error, unless --allow-unjudged."""
    def shaky(_, rows):
        _scale_latency(rows[INT8], 2.0)
        rows[INT8]["timing"].update(unstable=True, robust_spread=0.31)

    results = _variant(run, tmp_path, shaky)
    result = _check(results, "--baseline", run["baseline"], "--junit", tmp_path / "junit.xml")
    assert result.exit_code == 1, result.output
    [line] = [line for line in _lines(result.output, INT8, "unstable") if "latency ratio" in line]
    assert "2.000x" in line and "rounds disagree by 31%" in line and "--retime" in line
    error = _error(result.output)
    assert "1 latency budget(s) not judged, their timing unstable (tflite-int8@cpu)" in error
    assert "--allow-unjudged" in error and "0 of" not in error
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    [case] = [c for c in suite.iter("testcase") if c.get("classname") == INT8 and "latency ratio" in c.get("name")]
    assert case.find("error") is not None and case.find("skipped") is None and suite.get("errors") == "1"
    allowed = _check(results, "--baseline", run["baseline"], "--junit", tmp_path / "allowed.xml", "--allow-unjudged")
    assert allowed.exit_code == 0, allowed.output
    assert "check passed" in allowed.output.splitlines()[-1] and "passed by --allow-unjudged" in allowed.output
    suite = ET.parse(tmp_path / "allowed.xml").getroot().find("testsuite")
    assert suite.get("errors") == "0" and not list(suite.iter("error"))
    from edgekit import api

    assert not api.check(results, run["baseline"]).passed and api.check(results, run["baseline"], allow_unjudged=True).passed


def test_int8_rows_are_judged_against_their_own_fp32_row_not_the_keras_row(run, tmp_path):
    def keras_slower(_, rows):  # only the noisy Keras row moved: no int8 ratio changes
        _scale_latency(rows[BASE], 2.0)

    result = _check(_variant(run, tmp_path, keras_slower), "--baseline", run["baseline"])
    [line] = [line for line in _lines(result.output, INT8, "pass") if "latency ratio" in line]
    assert "1.000x" in line and "vs tflite-fp32@cpu" in line
    by_baseline = tmp_path / "by_baseline.yaml"
    by_baseline.write_text(TINY_RECIPE + "check:\n  defaults: {latency_reference: baseline, max_latency_ratio_regression: 1.25}\n")
    result = _check(_variant(run, tmp_path, keras_slower), "--baseline", run["baseline"], "--recipe", by_baseline)
    [line] = [line for line in _lines(result.output, INT8, "pass") if "latency ratio" in line]
    assert "0.500x" in line and "vs keras-fp32@cpu" in line



def _by_baseline(tmp_path):
    """The tiny recipe with every row's latency judged against the baseline row."""
    recipe = tmp_path / "by_baseline.yaml"
    recipe.write_text(TINY_RECIPE + "check:\n  defaults: {latency_reference: baseline}\n")
    return recipe
