"""The README recipe table: one line per results.json, rewritten between the markers only."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import InputError
from edgekit.report import readme_table
from tests.conftest import real_row


def _row(fmt, precision, value, p50, size=1000, status="ok", reason=None, metric="accuracy"):
    return real_row(fmt, precision, p50=p50, metrics={metric: value} if status == "ok" else {}, status=status,
                    reason=reason, size_bytes=size)


def _results(name="r1", metric="accuracy", higher=True, onnx_int8_failed=False):
    rows = [_row("keras", "fp32", 0.98, 0.25, metric=metric), _row("tflite", "fp32", 0.98, 0.004, 4096, metric=metric),
            _row("tflite", "int8", 0.97, 0.002, 2048, metric=metric), _row("onnx", "fp32", 0.98, 0.01, metric=metric),
            _row("onnx", "int8", 0.96, 0.012, metric=metric) if not onnx_int8_failed
            else _row("onnx", "int8", None, None, status="failed", reason="conversion failed: X", metric=metric),
            _row("openvino", "fp32", 0.98, 0.02, metric=metric), _row("openvino", "int8", 0.95, 0.018, metric=metric)]
    return {"recipe": {"name": name}, "baseline": "keras-fp32@cpu", "primary_metric": metric, "higher_is_better": higher,
            "model": {"source": "lstm", "parameters": 20297}, "data": {"source": "japanese_vowels"},
            "environment": {"cpu": "Test CPU"}, "benchmark": {"threads": 1}, "rows": rows}


def test_one_line_per_run_with_every_format():
    text = readme_table.table([_results(), _results("r2", "mae", False, onnx_int8_failed=True)])
    lines = text.splitlines()
    assert lines[0].startswith("| recipe | model | data | metric | fp32 (Keras) | int8 TFLite | int8 ONNX | int8 OpenVINO |")
    first = lines[2]
    assert "| `r1` | lstm (20,297 params) | japanese_vowels | accuracy ↑ | 0.9800 | 0.9700 | 0.9600 | 0.9500 |" in first
    assert "4.0 KiB → 2.0 KiB" in first and "| 250 us |" in first and "| 4 us / 2 us |" in first
    second = lines[3]
    assert "mae ↓" in second and "| failed¹ |" in second
    assert "¹ `r2` onnx-int8@cpu: conversion failed: X" in text and "Test CPU" in text


def test_readme_is_rewritten_between_the_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{readme_table.START}\nold table\n{readme_table.END}\nafter\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(_results()))
    result = CliRunner().invoke(cli, ["table", str(tmp_path / "run"), "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    content = readme.read_text()
    assert content.startswith("before\n") and content.endswith(f"{readme_table.END}\nafter\n")
    assert "old table" not in content and "| `r1` |" in content


def test_missing_markers_or_results_are_input_errors(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(InputError, match="no recipe table markers"):
        readme_table.update_readme(readme, "table")
    with pytest.raises(InputError, match="results not found"):
        readme_table.load([tmp_path / "nothing.json"])


def test_the_readme_holds_a_narrow_excerpt_and_docs_recipes_the_whole_table(tmp_path):
    """`edgekit table RUNS --readme docs/recipes.md --readme README.md` on copies of the real files:
    the whole table in docs/recipes.md, the narrow excerpt (no wider than 120 columns) in the README."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme, recipes = tmp_path / "README.md", tmp_path / "recipes.md"
    readme.write_text((root / "README.md").read_text())
    recipes.write_text((root / "docs" / "recipes.md").read_text())
    assert readme_table.START not in readme.read_text() and readme_table.EXCERPT_START not in recipes.read_text()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(_results()))
    result = CliRunner().invoke(cli, ["table", str(tmp_path / "run"), "--readme", str(recipes), "--readme", str(readme)])
    assert result.exit_code == 0, result.output
    whole = recipes.read_text().split(readme_table.START)[1].split(readme_table.END)[0]
    assert "| `r1` | lstm (20,297 params) | japanese_vowels |" in whole and "int8 OpenVINO" in whole
    excerpt = readme.read_text().split(readme_table.EXCERPT_START)[1].split(readme_table.EXCERPT_END)[0]
    rows = [line for line in excerpt.splitlines() if line.startswith("|")]
    assert rows[0] == "| recipe | metric | fp32 (Keras) | int8 TFLite | size TFLite fp32 → int8 | p50 TFLite fp32 / int8 |"
    assert rows[2] == "| `r1` | accuracy ↑ | 0.9800 | 0.9700 | 4.0 KiB → 2.0 KiB | 4 us / 2 us |"
    assert max(len(line) for line in rows) <= 120 and "Test CPU" in excerpt
