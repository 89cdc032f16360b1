"""What a run directory holds beyond the rows (issue 13, bullets 4, 6 and 7): the class names
(results.json ``data.classes`` and labels.txt), paths relative to the run directory (so it can be
moved and still read), and per-stage wall times (the log and results.json ``stages``)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.report import html as html_report
from edgekit.report import results as results_file

STAGES = ("data", "train", "compress", "convert", "evaluate", "convert_evaluate_wall", "bench", "report")


# --- 4. class names ---------------------------------------------------------------------------


def test_builtin_class_names_are_in_results_and_labels_txt(tiny_run):
    results = tiny_run.results
    assert results["data"]["classes"] == [str(i) for i in range(10)]  # digits: the ids are the names
    assert results["data"]["labels_file"] == "labels.txt"
    assert (tiny_run.dir / "labels.txt").read_text(encoding="utf-8").splitlines() == results["data"]["classes"]


CSV_RECIPE = """
name: animals
seed: 1
data:
  source: csv
  path: animals.csv
  label_column: animal
model:
  arch: mlp
  params: {hidden: [16]}
train:
  epochs: 30
  batch_size: 16
  learning_rate: 0.02
export:
  formats: [tflite]
quantize:
  precisions: [fp32]
benchmark:
  warmup: 1
  runs: 3
  inputs: 2
  profile: false
"""


def test_csv_string_labels_give_labels_txt_in_index_order(tmp_path):
    # Each class sits around its own point: a trained model's output index must name the animal.
    rng = np.random.default_rng(0)
    centres = {"zebra": (4.0, 0.0), "ant": (0.0, 4.0), "cat": (-4.0, -4.0)}
    lines = ["f1,animal,f2"]
    for i in range(240):
        name = list(centres)[i % 3]
        a, b = np.asarray(centres[name]) + rng.normal(scale=0.5, size=2)
        lines.append(f"{a:.3f},{name},{b:.3f}")
    (tmp_path / "animals.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "recipe.yaml").write_text(CSV_RECIPE)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "recipe.yaml"), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    results = json.loads((run_dir / "results.json").read_text())
    labels = (run_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels == results["data"]["classes"] == ["ant", "cat", "zebra"]
    # The index the artifact outputs is the line of labels.txt: feed it a zebra, read "zebra".
    from ai_edge_litert.interpreter import Interpreter

    row = next(r for r in results["rows"] if r["id"] == "tflite-fp32@cpu")
    interpreter = Interpreter(model_path=str(run_dir / row["path"]))
    interpreter.allocate_tensors()
    for name, centre in centres.items():
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray([centre], np.float32))
        interpreter.invoke()
        assert labels[int(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax())] == name


def test_regression_records_target_names_and_writes_no_labels_txt(tmp_path):
    from edgekit import environment
    from edgekit.pipeline import build as pipeline
    from edgekit.recipe.schema import load_recipe

    (tmp_path / "r.yaml").write_text("name: r\ntask: regression\ndata: {source: npz, path: d.npz}\nmodel: {arch: mlp}\n")
    recipe = load_recipe(tmp_path / "r.yaml")
    head = results_file.build_header(recipe, environment.collect(), {"source": "npz"}, "key", class_names=["price", "rent"])
    assert head["data"]["targets"] == ["price", "rent"]
    assert "classes" not in head["data"] and "labels_file" not in head["data"]
    (tmp_path / "labels.txt").write_text("stale\n")  # from an earlier classification run in this folder
    pipeline._write_labels(tmp_path, "regression", ["price", "rent"])
    assert not (tmp_path / "labels.txt").exists()


# --- 6. paths relative to the run directory --------------------------------------------------


def _moved(tiny_run, tmp_path) -> Path:
    copy = Path(shutil.copytree(tiny_run.dir, tmp_path / "built" / "run"))
    moved = tmp_path / "elsewhere" / "deeper" / "moved-run"
    moved.parent.mkdir(parents=True)
    shutil.move(str(copy), str(moved))
    assert not copy.exists()
    return moved


def test_paths_in_results_and_manifest_are_relative_to_the_run_directory(tiny_run):
    results = tiny_run.results
    manifest = json.loads((tiny_run.dir / "manifest.json").read_text())
    paths = [row["path"] for row in results["rows"]]
    paths += [f for artifact in manifest["artifacts"] for f in artifact["files"]]
    paths += [model["path"] for model in manifest["models"] if model.get("path")]
    assert paths and all(not Path(p).is_absolute() and ".." not in Path(p).parts for p in paths), paths
    assert all((tiny_run.dir / p).exists() for p in paths)
    assert results["rows"][0]["path"] == "model/model.keras"


def test_a_moved_run_directory_is_still_read(tiny_run, tmp_path):
    moved = _moved(tiny_run, tmp_path)
    results = json.loads((moved / "results.json").read_text())
    # Without the sizes the build measured, the report must read them from the artifact files.
    for row in results["rows"]:
        row.pop("gzip_bytes", None)
    (moved / "results.json").write_text(json.dumps(results))
    report = CliRunner().invoke(cli, ["report", str(moved)])
    assert report.exit_code == 0, report.output
    sizes = html_report.artifact_sizes(results["rows"], moved)
    for row in results["rows"]:
        files = html_report.artifact_files(row, moved)
        assert files and all(moved in f.parents for f in files), row["id"]
        assert sizes[row["id"]][0] == row["size_bytes"] == sum(f.stat().st_size for f in files)
        assert sizes[row["id"]][1] > 0
    assert (moved / "plots" / "sizes.png").exists()
    check = CliRunner().invoke(cli, ["check", str(moved)])
    original = CliRunner().invoke(cli, ["check", str(tiny_run.dir)])
    assert check.exit_code == original.exit_code == 0, check.output
    assert "not found" not in check.output


def test_resolve_path_keeps_absolute_paths_and_relative_path_leaves_outside_files_absolute(tmp_path):
    run_dir = tmp_path / "run"
    assert results_file.relative_path(run_dir / "artifacts" / "a.tflite", run_dir) == "artifacts/a.tflite"
    outside = tmp_path / "data.npz"
    assert results_file.relative_path(outside, run_dir) == str(outside)
    assert results_file.resolve_path("artifacts/a.tflite", tmp_path / "moved") == tmp_path / "moved" / "artifacts" / "a.tflite"
    assert results_file.resolve_path(str(outside), tmp_path / "moved") == outside


# --- 7. per-stage wall times -----------------------------------------------------------------


def test_stage_times_are_in_the_log_and_in_results(tiny_run):
    stages = tiny_run.results["stages"]
    assert list(stages) == list(STAGES)
    assert all(isinstance(v, float) and v >= 0 for v in stages.values()), stages
    # A fresh build trains, converts and evaluates in workers, and times every row.
    for name in ("train", "convert", "evaluate", "convert_evaluate_wall", "bench"):
        assert stages[name] > 0, (name, stages)
    assert stages["compress"] == 0.0  # the tiny recipe compresses nothing
    # The stages the build waited for add up to no more than the build (report comes after it).
    waited = sum(stages[s] for s in ("data", "train", "convert_evaluate_wall", "bench"))
    assert waited <= tiny_run.results["build_seconds"] + 0.5
    assert "convert_evaluate_wall" in tiny_run.results["stages_note"]
    for name in ("data", "train", "bench", "report"):
        logged = re.findall(rf"^\[{name}\] (\d+\.\d) s$", tiny_run.output, flags=re.MULTILINE)
        assert logged == [f"{stages[name]:.1f}"], (name, logged)
    assert re.search(r"^\[convert\+evaluate\] \d+\.\d s wall", tiny_run.output, flags=re.MULTILINE)


def test_manifest_records_each_variants_seconds(tiny_run):
    manifest = json.loads((tiny_run.dir / "manifest.json").read_text())
    stages = tiny_run.results["stages"]
    converted = [a for a in manifest["artifacts"] if a["format"] != "keras"]
    assert converted and all(a["seconds"]["convert"] > 0 and a["seconds"]["evaluate"] > 0 for a in converted)
    assert sum(a["seconds"]["convert"] for a in converted) == pytest.approx(stages["convert"], abs=0.1)
