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
    from edgekit.recipe.schema import load_recipe

    with pytest.raises(RecipeError, match="loss_tolerance"):
        load_recipe(write_recipe("name: t\nmodel: {arch: mlp}\ncheck: {loss_tolerance: {accuracy: -1}}\n"))
    assert load_recipe(write_recipe("name: t\nmodel: {arch: mlp}\ncheck: {loss_tolerance: {mae: null}}\n",
                                    "ok.yaml")).check.loss_tolerance == {"mae": None}


def _with_outputs(row: dict, kind: float, amount: float, right: float) -> dict:
    """``row`` as a model of three outputs scores it: kind (the classification headline),
    amount (a labelled regression head), right (an unlabelled head, scored by SNR)."""
    row["outputs"] = {
        "kind": {"task": "classification", "primary_metric": "accuracy", "metrics": {"accuracy": kind}, "headline": True},
        "amount": {"task": "regression", "primary_metric": "mae", "metrics": {"mae": amount}, "headline": False},
        "right": {"task": "fidelity", "primary_metric": "snr_db", "metrics": {"snr_db": right}, "headline": False},
    }
    return row


def test_each_output_is_flagged_on_its_own_and_shown_as_the_table_shows_it():
    """An OpenVINO int8 regression head at MAE +23% and an unlabelled head at 13.9 dB, behind a
    classification headline that even improved, read ok before: every output is flagged on its own."""
    from edgekit.report.cells import delta_cell, output_cells
    from edgekit.report.html import _outputs
    from edgekit.report.markdown import outputs_table

    rows = _rows("accuracy", 0.7167, {"tflite-int8": 0.7167, "openvino-int8": 0.775})
    for row, (kind, amount, right) in zip(rows, [(0.7167, 1.0599, 120.0), (0.7167, 1.0630, 34.27), (0.775, 1.3014, 13.86)]):
        _with_outputs(row, kind, amount, right)
    record = flags.flag_losses(rows, "accuracy", True)
    assert record["rows"] == ["openvino-int8@cpu"] and "loss" not in rows[1]
    assert record["tolerance"] == {"accuracy": 0.01, "mae": 0.05, "snr_db": 20.0}
    assert rows[2]["notes"][:2] == ["loss: output amount mae 1.3014 vs 1.0599 on keras-fp32@cpu (+23%, past 5%)",
                                    "loss: output right snr_db 13.9 dB, below 20 dB"]
    assert rows[2]["loss"]["output"] == "amount" and rows[2]["loss"]["metric"] == "mae"
    results = {"rows": rows, "baseline": "keras-fp32@cpu", "loss_flags": record, "primary_metric": "accuracy",
               "higher_is_better": True}
    assert "(accuracy past 1 point(s), mae past 5%, snr_db below 20 dB)" in flags.summary_lines(results)[0]
    header, *cells = output_cells(results)
    assert header == ["id", "kind (classification: accuracy)", "amount (regression: mae)", "right (fidelity: snr_db)"]
    assert cells[0] == ["keras-fp32@cpu", "0.7167*", "1.0599", "ref"]
    assert cells[2] == ["openvino-int8@cpu", "0.7750*", "1.3014", "13.9 dB"]
    assert "| openvino-int8@cpu | 0.7750* | 1.3014 | 13.9 dB |" in outputs_table(results)
    assert "<td class='num'>13.9 dB</td>" in _outputs(results)
    assert delta_cell("mae", -1.3e-9) == "+0.0000" and delta_cell("mae", -0.0001) == "-0.0001"
