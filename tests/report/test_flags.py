"""The default loss flag: a row much worse than the baseline row gets a note without any budget
(1 point of a score, 5% of an error metric, an SNR under 20 dB), counted under the table; exit
codes stay the budgets'."""

from __future__ import annotations

import pytest

from edgekit.report import flags
from tests.conftest import real_row


def _rows(metric: str, base: float, values: dict[str, float]) -> list[dict]:
    base_metrics = {metric: base}
    rows = [real_row("keras", "fp32", p50=1.0, metrics=base_metrics, baseline_metrics=base_metrics)]
    for stem, value in values.items():
        fmt, precision = stem.split("-")
        rows.append(real_row(fmt, precision, p50=0.5, metrics={metric: value}, baseline_metrics=base_metrics))
    return rows


def test_accuracy_past_one_point_is_flagged_and_counted():
    rows = _rows("accuracy", 0.96, {"tflite-int8": 0.955, "onnx-int8": 0.485, "openvino-int8": 0.9499})
    record = flags.flag_losses(rows, "accuracy", True)
    assert record["rows"] == ["onnx-int8@cpu", "openvino-int8@cpu"] and record["tolerance"] == {"accuracy": 0.01}
    by_id = {row["id"]: row for row in rows}
    assert "loss" not in by_id["tflite-int8@cpu"] and by_id["tflite-int8@cpu"]["notes"] == []
    assert by_id["onnx-int8@cpu"]["notes"][0] == "loss: accuracy 0.4850 vs 0.9600 on keras-fp32@cpu (-0.4750, past 1 point(s))"
    assert by_id["onnx-int8@cpu"]["loss"]["worse_by"] == "-0.4750"
    assert by_id["onnx-int8@cpu"]["status"] == "ok"  # a note, not a failure
    line = flags.summary_lines({"loss_flags": record, "primary_metric": "accuracy", "higher_is_better": True})
    assert line == ["loss: 2 row(s) worse than keras-fp32@cpu (accuracy past 1 point(s)): onnx-int8@cpu, "
                    "openvino-int8@cpu; a note, not a failure: budgets in the recipe's check: decide the exit code"]


def test_error_metrics_are_flagged_past_five_percent_and_the_recipe_overrides():
    rows = _rows("mae", 9.6, {"tflite-int8": 10.0, "openvino-int8": 14.1})
    assert flags.flag_losses(rows, "mae", False)["rows"] == ["openvino-int8@cpu"]
    assert rows[2]["notes"][0] == "loss: mae 14.1000 vs 9.6000 on keras-fp32@cpu (+47%, past 5%)"
    rows = _rows("mae", 9.6, {"tflite-int8": 10.0, "openvino-int8": 14.1})
    assert flags.flag_losses(rows, "mae", False, {"mae": 0.01})["rows"] == ["tflite-int8@cpu", "openvino-int8@cpu"]
    rows = _rows("mae", 9.6, {"openvino-int8": 14.1})
    assert flags.flag_losses(rows, "mae", False, {"mae": None}) is None and rows[1]["notes"] == []


def test_label_free_rows_are_flagged_under_20_db_or_one_point_of_agreement():
    base = {"snr_db": 120.0, "top1_agreement": 1.0}
    rows = [real_row("keras", "fp32", p50=1.0, metrics=base, baseline_metrics=base)]
    for fmt, snr, agree in (("tflite", 14.2, 1.0), ("onnx", 31.0, 0.97), ("openvino", 35.0, 0.995)):
        rows.append(real_row(fmt, "int8", p50=0.5, metrics={"snr_db": snr, "top1_agreement": agree}, baseline_metrics=base))
    record = flags.flag_losses(rows, "snr_db", True)
    assert record["rows"] == ["tflite-int8@cpu", "onnx-int8@cpu"]
    assert rows[1]["notes"][0] == "loss: snr_db 14.2 dB, below 20 dB"
    assert rows[2]["notes"][0].startswith("loss: top1_agreement 0.9700 vs 1.0000 on keras-fp32@cpu (-0.0300")


def test_the_tiny_build_records_its_tolerance_and_notes_every_flagged_row(tiny_run):
    results = tiny_run.results
    record = results["loss_flags"]
    assert record["tolerance"] == {"accuracy": 0.01} and record["reference_row"] == "keras-fp32@cpu"
    base = results["rows"][0]["metrics"]["accuracy"]
    for row in results["rows"][1:]:
        lost = row["status"] == "ok" and base - row["metrics"]["accuracy"] > 0.01 + 1e-9
        assert (row["id"] in record["rows"]) == lost and ("loss" in row) == lost, row["id"]
        if lost:
            assert row["notes"][0].startswith(f"loss: accuracy {row['metrics']['accuracy']:.4f} vs {base:.4f}")
    assert results["gate_metric"] == "accuracy"
    table = (tiny_run.dir / "report.md").read_text()
    assert ("**loss: " in table) == bool(record["rows"])


def test_recipe_refuses_a_negative_tolerance(write_recipe):
    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe

    with pytest.raises(RecipeError, match="loss_tolerance"):
        load_recipe(write_recipe("name: t\nmodel: {arch: mlp}\ncheck: {loss_tolerance: {accuracy: -1}}\n"))
    assert load_recipe(write_recipe("name: t\nmodel: {arch: mlp}\ncheck: {loss_tolerance: {mae: null}}\n",
                                    "ok.yaml")).check.loss_tolerance == {"mae": None}
