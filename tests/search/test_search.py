"""`edgekit search`: the space's trials, the strategies, and one real search of four trials
(two timed, two stopped by their short fine-tune) with its results, report, check and rebuild."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli import cli

SEARCH_RECIPE = textwrap.dedent("""
    name: tinys
    seed: 3
    data:
      source: digits
    model:
      arch: mlp
      params: {hidden: [32]}
    train:
      epochs: 4
      batch_size: 32
      learning_rate: 0.01
    quantize:
      calibration_samples: 64
    benchmark:
      warmup: 2
      runs: 20
      inputs: 4
    search:
      space:
        prune: [none, {sparsity: 0.9, epochs: 2}]
        format: [tflite]
        precision: [fp32, int8]
      constraints: {max_metric_drop: 0.02}
      early_stop: {epochs: 1, slack: 0.02}
""")


def _recipe(tmp_path: Path, search: str | None = None):
    from edgekit.recipe.schema import load_recipe

    text = SEARCH_RECIPE if search is None else SEARCH_RECIPE.split("search:")[0] + search
    path = tmp_path / "search.yaml"
    path.write_text(text)
    return load_recipe(path)


# --------------------------------------------------------------------------- the space


def test_settings_that_do_not_apply_are_dropped_and_impossible_points_build_nothing(tmp_path):
    from edgekit.search import space

    recipe = _recipe(tmp_path, textwrap.dedent("""
        search:
          space:
            qat: [false, true]
            format: [tflite, onnx, openvino]
            precision: [fp32, int8, fp16]
            per_channel: [false, true]
            calibration_samples: [64, 128]
    """))
    trials, invalid = space.trials(recipe.search.space, recipe)
    by_label = {t.label: t for t in trials}
    # ONNX and OpenVINO have no fp16 converter; QAT exports int8 only.
    assert not any("fp16" in t.stem and not t.stem.startswith("tflite") for t in trials)
    assert not any(t.settings.get("qat") is not None and t.settings["precision"] != "int8" for t in trials)
    # fp32 reads no calibration and no per-channel setting: one trial per format, not four.
    assert sum(1 for t in trials if t.stem == "onnx-fp32") == 1 and by_label["onnx-fp32"].settings.keys() == {"format", "precision"}
    # per_channel is an ONNX option only; calibration applies to PTQ int8 of every format, not to QAT.
    assert {t.label for t in trials if t.stem == "onnx-int8"} == {
        f"onnx-int8 calibration_samples={c} per_channel={p}" for c in (64, 128) for p in (False, True)}
    assert {t.label for t in trials if t.stem == "tflite-int8"} == {"tflite-int8 calibration_samples=64",
                                                                   "tflite-int8 calibration_samples=128"}
    assert by_label["qat-tflite-int8"].settings == {"format": "tflite", "precision": "int8", "qat": {"epochs": 3}}
    assert invalid > 0 and len({t.id for t in trials}) == len(trials)


def test_a_trial_recipe_is_a_normal_recipe_of_one_variant(tmp_path):
    from edgekit.recipe.reading import read_document
    from edgekit.recipe.schema import load_recipe
    from edgekit.search import space

    recipe = _recipe(tmp_path, textwrap.dedent("""
        search:
          space:
            prune: ["2:4"]
            format: [openvino]
            precision: [int8]
          constraints: {max_metric_drop: 0.03, max_size_bytes: 100000}
    """))
    (trial,), _ = space.trials(recipe.search.space, recipe)
    doc = space.document(read_document(recipe.path)[0], recipe, trial, recipe.search)
    (tmp_path / "trials").mkdir()
    path = tmp_path / "trials" / f"{trial.id}.yaml"
    path.write_text(yaml.safe_dump(doc))
    built = load_recipe(path)  # validates, from another folder
    assert built.search is None and built.name == f"tinys-{trial.id}"
    assert built.export.formats == ["openvino"] and built.export.openvino.auto_bf16 is False
    assert built.quantize.precisions == ["fp32"] and built.compress[0].precisions == ["int8"]
    assert built.compress[0].name == "pruned2of4" and trial.stem == "pruned2of4-openvino-int8"
    assert built.check.defaults.max_metric_drop == 0.03 and built.check.defaults.max_size_bytes == 100000
    assert built.benchmark.profile is False  # no memory asked for: no probe process per row


def test_a_bad_search_section_is_one_line_exit_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SEARCH_RECIPE.replace("format: [tflite]", "format: [tflight]"))
    result = CliRunner().invoke(cli, ["search", str(path)])
    assert result.exit_code == 2 and 'search.space.format: unknown format "tflight"' in result.output
    path.write_text(SEARCH_RECIPE.replace("prune: [none,", "prune: [1.5,"))
    result = CliRunner().invoke(cli, ["search", str(path)])
    assert result.exit_code == 2 and "search.space.prune" in result.output and "sparsity" in result.output
    path.write_text(SEARCH_RECIPE.split("search:")[0])
    result = CliRunner().invoke(cli, ["search", str(path)])
    assert result.exit_code == 2 and "no search: section" in result.output


def test_tpe_asks_distinct_buildable_trials_up_to_max_trials_and_learns_constraints(tmp_path):
    pytest.importorskip("optuna")
    from edgekit.search import strategy

    recipe = _recipe(tmp_path, textwrap.dedent("""
        search:
          space:
            format: [tflite, onnx, openvino]
            precision: [fp32, fp16, int8, dynamic, int16x8]
            calibration_samples: [32, 64, 128, 256]
          strategy: tpe
          max_trials: 7
    """))
    walker, grid, invalid = strategy.make(recipe.search, recipe)
    assert walker.name == "tpe" and len(grid) > 7 and invalid > 0
    seen = []
    while batch := walker.ask(2):
        assert len(batch) <= 2
        for trial in batch:
            assert trial.id in {t.id for t in grid}  # buildable, canonical
            seen.append(trial.id)
            # fp16 "breaks" the size budget here; the rest are feasible with p50 by precision
            broken = trial.settings["precision"] == "fp16"
            walker.tell(trial, {"value": None if broken else 1.0 + len(trial.settings["precision"]),
                                "constraints": [1.0] if broken else [-0.5]})
    assert len(seen) == 7 == len(set(seen))


# --------------------------------------------------------------------------- one real search


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One `edgekit search` of 4 trials in the calling process (EDGEKIT_WORKERS=0)."""
    folder = tmp_path_factory.mktemp("search")
    recipe = folder / "search.yaml"
    recipe.write_text(SEARCH_RECIPE)
    runner = CliRunner(env={"EDGEKIT_WORKERS": "0", "EDGEKIT_CACHE_DIR": str(folder / "cache")})
    result = runner.invoke(cli, ["search", str(recipe), "--out", str(folder / "out")])
    return folder, result


def test_a_search_times_what_can_meet_the_budget_and_picks_the_fastest(searched):
    folder, result = searched
    assert result.exit_code == 0, result.output
    doc = json.loads((folder / "out" / "results.json").read_text())
    search = doc["search"]
    trials = {t["label"]: t for t in search["trials"]}
    assert set(trials) == {"tflite-fp32", "tflite-int8", "pruned90-tflite-fp32", "pruned90-tflite-int8"}
    # 90% pruning after one epoch of fine-tuning is far past the budget: stopped, never converted
    for label in ("pruned90-tflite-fp32", "pruned90-tflite-int8"):
        trial = trials[label]
        assert trial["status"] == "stopped" and trial["probe"]["drop"] > 0.04 and not trial["rows"]
        assert not (folder / "out" / trial["run_dir"] / "artifacts").exists()
    ok = [t for t in search["trials"] if t["status"] == "ok"]
    assert len(ok) == 2 and all(t["meets"] for t in ok)
    for trial in ok:
        row = trial["rows"]["cpu"]
        low, high = row["p50_ci95_ms"]
        assert low <= row["latency_ms"]["p50"] <= high and row["size_bytes"] > 0 and row["drop"] <= 0.02
    pick = search["pick"]
    fastest = min(ok, key=lambda t: t["rows"]["cpu"]["latency_ms"]["p50"])
    assert pick["trial"] == fastest["id"] and pick["row"] == fastest["rows"]["cpu"]["id"]
    other = next(t for t in ok if t is not fastest)
    assert pick["runner_up"] == other["id"]
    assert pick["margin"] == pytest.approx(other["rows"]["cpu"]["latency_ms"]["p50"] / fastest["rows"]["cpu"]["latency_ms"]["p50"])
    assert pick["significant"] == (pick["margin_ci95"][0] > 1.0)
    assert set(search["front"]["cpu"]) <= {t["id"] for t in ok} and pick["trial"] in search["front"]["cpu"]
    # a results file: the baseline row and the pick's row, as the pick's build wrote them
    assert [r["id"] for r in doc["rows"]] == [doc["baseline"], pick["row"]]
    assert "pick: " + pick["row"] in result.output
    page = (folder / "out" / "report.html").read_text()
    assert "data:image/png;base64," in page and fastest["id"] in page and (folder / "out" / "plots" / "front_cpu.png").is_file()


def test_check_gates_on_the_pick_and_its_recipe_rebuilds_its_row(searched, tmp_path):
    folder, _ = searched
    out = folder / "out"
    doc = json.loads((out / "results.json").read_text())
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(folder / "cache")})
    passed = runner.invoke(cli, ["check", str(out)])
    assert passed.exit_code == 0, passed.output
    assert doc["search"]["pick"]["row"] in passed.output
    none = tmp_path / "none"
    shutil.copytree(out, none)
    doc_none = {**doc, "search": {**doc["search"], "pick": None}}
    (none / "results.json").write_text(json.dumps(doc_none))
    failed = runner.invoke(cli, ["check", str(none)])
    assert failed.exit_code == 1 and "no trial of the search met its constraints" in failed.output
    # edgekit build of the pick's recipe: the same row (its stages, timing included, from the cache)
    rebuilt = runner.invoke(cli, ["build", str(out / doc["search"]["pick"]["recipe"]), "--out", str(tmp_path / "pick")])
    assert rebuilt.exit_code == 0, rebuilt.output
    rows = {r["id"]: r for r in json.loads((tmp_path / "pick" / "results.json").read_text())["rows"]}
    mine = next(r for r in doc["rows"] if r["id"] == doc["search"]["pick"]["row"])
    assert rows[mine["id"]]["metrics"] == mine["metrics"] and rows[mine["id"]]["size_bytes"] == mine["size_bytes"]
    assert rows[mine["id"]]["latency_ms"] == mine["latency_ms"]


def test_a_search_run_again_reuses_its_trials_and_extends_to_new_points(searched):
    folder, _ = searched
    recipe = folder / "search.yaml"
    recipe.write_text(SEARCH_RECIPE.replace("precision: [fp32, int8]", "precision: [fp32, int8, fp16]"))
    before = json.loads((folder / "out" / "results.json").read_text())["search"]["trials"]
    runner = CliRunner(env={"EDGEKIT_WORKERS": "0", "EDGEKIT_CACHE_DIR": str(folder / "cache")})
    result = runner.invoke(cli, ["search", str(recipe), "--out", str(folder / "out")])
    assert result.exit_code == 0, result.output
    after = {t["id"]: t for t in json.loads((folder / "out" / "results.json").read_text())["search"]["trials"]}
    assert len(after) == 6 and {t["id"] for t in before} < set(after)
    for trial in before:  # the same answers, timings included: every stage of theirs came from the cache
        assert after[trial["id"]]["status"] == trial["status"] and after[trial["id"]]["rows"] == trial["rows"]
    fp16 = next(t for t in after.values() if t["label"] == "tflite-fp16")
    assert fp16["status"] == "ok" and fp16["rows"]["cpu"]["size_bytes"] > 0
