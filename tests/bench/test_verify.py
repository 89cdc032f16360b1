"""`edgekit verify`: the runtimes' own benchmark tools on a real tiny build, and every way a row
cannot be checked (no tool, a hung tool, a missing artifact, no results.json)."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.bench import verify
from edgekit.cli import cli


def _copy(tiny_run, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny_run.dir, run)
    return run


def _keep_rows(run: Path, edit: dict[str, dict]) -> None:
    """Keep the baseline row and the rows named in ``edit`` (row id -> fields to update)."""
    results = json.loads((run / "results.json").read_text())
    rows = []
    for row in results["rows"]:
        if row["id"] == results["baseline"]:
            rows.append(row)
        elif row["id"] in edit:
            changes = edit[row["id"]]
            row["latency_ms"].update(changes.get("latency_ms", {}))
            row["settings"].update(changes.get("settings", {}))
            row.update({k: v for k, v in changes.items() if k not in ("latency_ms", "settings")})
            rows.append(row)
    results["rows"] = rows
    (run / "results.json").write_text(json.dumps(results))


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["verify", *map(str, args)])


def _fake_tool(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture(scope="module")
def verified(tiny_run, tmp_path_factory):
    """verify on a copy of the shared tiny build (one row per format), with edgekit's session and
    the real tools in 3 alternating pairs each: (run dir, result, verify.json)."""
    run = _copy(tiny_run, tmp_path_factory.mktemp("verify"))
    _keep_rows(run, {"tflite-fp32@cpu": {}, "openvino-fp32@cpu": {}, "onnx-fp32@cpu": {}})
    result = _invoke(run)
    return run, result, json.loads((run / verify.VERIFY_FILE).read_text())


def test_real_tools_give_a_native_figure_and_ratio_for_openvino_and_tflite_rows(verified):
    _, result, doc = verified
    rows = {row["id"]: row for row in doc["rows"]}
    timed = [row for row in rows.values() if row["format"] in ("openvino", "tflite")]
    assert {row["format"] for row in timed} == {"openvino", "tflite"}, result.output
    stored = {row["id"]: row["latency_ms"]["p50"] for row in json.loads((run_dir(verified) / "results.json").read_text())["rows"]}
    for row in timed:
        assert row["verdict"] in ("ok", "outside", "unsure"), (row, result.output)
        assert row["native_ms"] > 0 and row["native_statistic"] == "median"
        # both sides timed now, in 3 alternating pairs; the ratio is the pairs' geometric mean
        assert len(row["pairs"]) == 3 and all(a > 0 and b > 0 for a, b in row["pairs"])
        assert row["ratio"] == pytest.approx(row["edgekit_p50_ms"] / row["native_ms"])
        assert row["ratio"] == pytest.approx(verify.ratio_verdict(row["pairs"], doc["tolerance"])[0])
        lo, hi = row["ratio_ci95"]
        assert lo < row["ratio"] < hi
        low, high = doc["ratio_bounds"]
        assert (row["verdict"] == "ok") == (low <= row["ratio"] <= high)
        assert (row["verdict"] == "outside") == (hi < low or lo > high)
        assert row["stored_p50_ms"] == stored[row["id"]]  # shown beside, not judged
        assert f"{row['ratio']:.2f}x [{lo:.2f}-{hi:.2f}]" in result.output
        assert row["session_command"][1].endswith("runner.py")  # edgekit's own session: the device runner
    ov = next(row for row in timed if row["format"] == "openvino")
    assert ov["command"][ov["command"].index("-nthreads") + 1] == "1"  # the tiny recipe's benchmark.threads
    assert ov["command"][ov["command"].index("-infer_precision") + 1] == "f32"
    assert ["-hint", "none"] == ov["command"][ov["command"].index("-hint"):][:2]
    lite = next(row for row in timed if row["format"] == "tflite")
    assert lite["command"][lite["command"].index("--num_threads") + 1] == "1"
    outside = any(row["verdict"] == "outside" for row in timed)
    assert result.exit_code == (1 if outside else 0) == doc["exit_code"], result.output
    assert "p50" in result.output and "median" in result.output  # the statistics compared are named


def test_keras_and_onnx_rows_are_unchecked_with_the_reason(verified):
    _, result, doc = verified
    rows = {row["format"]: row for row in doc["rows"]}
    assert rows["keras"]["verdict"] == "unchecked" and "no native benchmark tool" in rows["keras"]["reason"]
    assert rows["onnx"]["verdict"] == "unchecked"
    assert "onnxruntime ships no benchmark tool" in rows["onnx"]["reason"]
    assert "unchecked: onnxruntime ships no benchmark tool" in result.output


def run_dir(verified) -> Path:
    return verified[0]


def test_a_tool_ten_times_faster_is_outside_and_the_stored_p50_is_not_judged(tiny_run, tmp_path, verified):
    """The stored p50 ten times too slow changes no verdict (both sides are timed now); a tool
    that reports a tenth of edgekit's time is outside, its whole interval past the band."""
    run = _copy(tiny_run, tmp_path)
    before = {row["id"]: row for row in verified[2]["rows"]}
    ov = next(key for key, row in before.items() if row["format"] == "openvino")
    _keep_rows(run, {ov: {"latency_ms": {"p50": before[ov]["stored_p50_ms"] * 10}}})
    tools = tmp_path / "tools"
    _fake_tool(tools, "benchmark_app", f'echo "[ INFO ]    Median:        {before[ov]["edgekit_p50_ms"] * 100:.3f} us"\n')
    result = _invoke(run, "--runs", 50, "--tools-dir", tools)
    row = {r["id"]: r for r in json.loads((run / verify.VERIFY_FILE).read_text())["rows"]}[ov]
    assert row["verdict"] == "outside", result.output
    assert row["ratio_ci95"][0] > 1.25 and row["runs"] == 50 and len(row["pairs"]) == 3
    assert row["edgekit_p50_ms"] < row["stored_p50_ms"] / 3  # measured now, not read from results.json
    assert result.exit_code == 1 and "1 outside" in result.output


def test_the_verdict_needs_the_interval_outside_the_band():
    assert verify.ratio_verdict([(1.1, 1.0), (1.0, 1.0), (1.05, 1.0)], 0.25)[2] == "ok"
    ratio, interval, verdict = verify.ratio_verdict([(1.3, 1.0), (1.8, 1.0), (1.2, 1.0)], 0.25)
    assert verdict == "unsure" and ratio > 1.25 and interval[0] < 1.25  # out of the band, not significantly
    ratio, interval, verdict = verify.ratio_verdict([(1.6, 1.0), (1.7, 1.0), (1.65, 1.0)], 0.25)
    assert verdict == "outside" and interval[0] > 1.25
    assert verify.ratio_verdict([(0.5, 1.0), (0.52, 1.0), (0.49, 1.0)], 0.25)[2] == "outside"
    assert verify.ratio_verdict([(0.5, 1.0), (0.52, 1.0), (0.49, 1.0)], 1000)[2] == "ok"  # a tolerance wide enough


def test_threads_and_precision_come_from_the_row(tiny_run, tmp_path, verified):
    """A fake benchmark_app records its arguments: the row's threads and bf16 precision reach it."""
    run = _copy(tiny_run, tmp_path)
    ov = next(row["id"] for row in verified[2]["rows"] if row["format"] == "openvino")
    _keep_rows(run, {ov: {"precision": "bf16", "settings": {"threads": 2, "inference_precision": "bf16"},
                          "latency_ms": {"p50": 0.01}}})
    args = tmp_path / "args.txt"
    tools = tmp_path / "tools"
    _fake_tool(tools, "benchmark_app", f'printf "%s\\n" "$@" > "{args}"\n'
                                       'echo "[ INFO ]    Median:        5.00 us"\necho "[ INFO ]    Average:       6.00 us"\n')
    _invoke(run, "--tools-dir", tools)
    argv = args.read_text().split()
    assert argv[argv.index("-nthreads") + 1] == "2" and argv[argv.index("-infer_precision") + 1] == "bf16"
    row = {r["id"]: r for r in json.loads((run / verify.VERIFY_FILE).read_text())["rows"]}[ov]
    assert row["native_ms"] == pytest.approx(0.005) and [b for _, b in row["pairs"]] == pytest.approx([0.005] * 3)
    assert row["ratio"] == pytest.approx(row["edgekit_p50_ms"] / 0.005)
    assert row["session_command"] and row["stored_p50_ms"] == 0.01


def test_a_missing_tool_leaves_its_rows_unchecked_naming_what_to_install(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    (tmp_path / "empty").mkdir()
    result = _invoke(run, "--tools-dir", tmp_path / "empty")
    assert result.exit_code == 0, result.output
    rows = json.loads((run / verify.VERIFY_FILE).read_text())["rows"]
    for fmt, install in (("openvino", "pip install openvino"), ("tflite", "pip install ai-edge-litert")):
        for row in (r for r in rows if r["format"] == fmt):
            assert row["verdict"] == "unchecked" and install in row["reason"], row


def test_a_hung_tool_fails_its_row_after_the_timeout(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    _keep_rows(run, {"openvino-fp32@cpu": {}})  # each row first times edgekit's own session: one is enough
    tools = tmp_path / "tools"
    _fake_tool(tools, "benchmark_app", "exec sleep 30\n")
    result = _invoke(run, "--tools-dir", tools, "--timeout", 1)
    assert result.exit_code == 1
    assert "failed: benchmark_app timed out after 1 s" in result.output
    assert "Traceback" not in result.output


def test_missing_artifacts_are_one_line_per_row(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    for path in list((run / "artifacts").glob("*.tflite")) + list((run / "artifacts").glob("*.bin")):
        path.unlink()
    (tmp_path / "empty").mkdir()
    result = _invoke(run, "--tools-dir", tmp_path / "empty")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "not found in the run directory" in line]
    rows = json.loads((run / "results.json").read_text())["rows"]
    assert len(lines) == sum(row["format"] in ("tflite", "openvino") and row["status"] == "ok" for row in rows)
    assert any(".bin" in line for line in lines) and any(".tflite" in line for line in lines)


def test_a_run_dir_without_results_json_is_one_line_and_exit_2(tmp_path):
    result = _invoke(tmp_path)
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert "results.json" in result.output and "edgekit build" in result.output


def test_benchmark_app_output_is_parsed_in_either_unit():
    text = ("[ INFO ] Latency:\n[ INFO ]    Median:        12.50 us\n[ INFO ]    Average:       1.20 ms\n"
            "[ INFO ] Latency for each data shape group:\n[ INFO ]    Median:     99.00 ms\n")
    value, statistic, extra = verify.parse_benchmark_app(text)
    assert (value, statistic) == (pytest.approx(0.0125), "median") and extra["average_ms"] == pytest.approx(1.2)
    value, statistic, _ = verify.parse_benchmark_app("[ INFO ]    Average:       2.00 ms\n")
    assert value == pytest.approx(2.0) and statistic.startswith("avg")
    with pytest.raises(verify.ToolFailed):
        verify.parse_benchmark_app("[ ERROR ] cannot read model\n")


def test_the_tolerance_is_symmetric_on_a_log_scale():
    low, high = verify.ratio_bounds(0.25)
    assert low == pytest.approx(0.8) and high == pytest.approx(1.25)
