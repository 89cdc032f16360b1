"""Label-free fidelity (task fidelity): the metrics, x-only data, the recipe's refusals, the
check budgets on snr_db, and one real build of a model file on an npz that holds x only."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import DataError, RecipeError
from edgekit.evaluate import scores


def test_snr_is_over_the_whole_split_and_capped():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10))
    noise = rng.standard_normal((50, 10))
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 100)  # noise power = 1% of the signal's
    assert scores.snr_db(ref + noise, ref) == pytest.approx(20.0)
    assert scores.snr_db(ref, ref) == scores.SNR_CAP == 120.0  # the reference itself: finite, JSON-safe
    assert scores.snr_db(ref + 1e-9, ref) == scores.SNR_CAP  # below float32 rounding
    assert scores.snr_db(np.ones(4), np.zeros(4)) == -scores.SNR_CAP
    # One quiet sample does not dominate: the ratio of sums, not a mean of per-sample SNRs.
    ref[0] = 1e-6
    assert scores.snr_db(ref + noise, ref) == pytest.approx(20.0, abs=0.2)


def test_fidelity_metrics_agreement_only_for_class_scores():
    rng = np.random.default_rng(1)
    probs = scores.softmax(rng.standard_normal((40, 5)))
    flipped = probs.copy()
    flipped[:4] = flipped[:4, ::-1]  # 4 of 40 samples change their top class (ties aside)
    got = scores.metrics("fidelity", flipped, probs)
    assert set(got) == {"snr_db", "max_abs_diff", "top1_agreement"}
    assert got["top1_agreement"] == pytest.approx(np.mean(flipped.argmax(-1) == probs.argmax(-1)))
    assert got["max_abs_diff"] == pytest.approx(np.abs(flipped - probs).max())
    images = rng.uniform(size=(10, 8, 8, 1))  # a generator's output: no classes
    assert set(scores.metrics("fidelity", images * 0.99, images)) == {"snr_db", "max_abs_diff"}
    assert "top1_agreement" not in scores.metrics("fidelity", rng.standard_normal((10, 3)), rng.standard_normal((10, 3)))


def _spec(path, **extra):
    return SimpleNamespace(source="npz", path=path, test_fraction=0.25, val_fraction=0.1, normalize="none",
                           label_column=None, **extra)


def test_x_only_npz_loads_label_free(tmp_path):
    from edgekit.data import load_dataset

    x = np.random.default_rng(0).standard_normal((80, 6)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    data = load_dataset(_spec(tmp_path / "x.npz"), 0, 16, task="fidelity")
    assert (len(data.x_train), len(data.x_val), len(data.x_test), len(data.x_calib)) == (54, 6, 20, 16)
    assert data.y_test.shape == (20, 0) and data.num_classes == 0 and "label-free" in data.info["labels"]
    # Labels in the file are ignored, and the splits are the same as without them (no stratify).
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(80) % 2)
    again = load_dataset(_spec(tmp_path / "xy.npz"), 0, 16, task="fidelity")
    np.testing.assert_array_equal(again.x_test, data.x_test)
    np.savez(tmp_path / "y.npz", y=np.arange(80))
    with pytest.raises(DataError, match="expected an array x of sample inputs"):
        load_dataset(_spec(tmp_path / "y.npz"), 0, 16, task="fidelity")
    with pytest.raises(DataError, match="expected arrays x_train, y_train"):  # other tasks still need y
        load_dataset(_spec(tmp_path / "x.npz"), 0, 16, task="classification")


def test_csv_under_fidelity_keeps_every_column_unless_one_is_named(tmp_path):
    from edgekit.data import load_dataset

    (tmp_path / "x.csv").write_text("a,b,c\n" + "\n".join(f"{i},{i * 2},{i % 3}" for i in range(40)))
    spec = {"source": "csv", "path": tmp_path / "x.csv", "test_fraction": 0.25, "val_fraction": 0.0, "normalize": "none"}
    assert load_dataset(SimpleNamespace(**spec, label_column=None), 0, 8, task="fidelity").input_shape == (3,)
    assert load_dataset(SimpleNamespace(**spec, label_column="c"), 0, 8, task="fidelity").input_shape == (2,)


@pytest.mark.parametrize("section, fragment", [
    ("model: {python: 'mod:build'}", "no labels to train model.python"),
    ("model: {arch: lenet}", "no labels to train model.arch lenet"),
    ("model: {file: m.keras}\ncompress: [{prune: {}}]", "fine-tunes on the task loss"),
    ("model: {file: m.keras}\nquantize: {precisions: [fp32, int8, int8-mixed], max_drop: 1}", "task fidelity has none"),
])
def test_recipe_refuses_what_needs_labels(write_recipe, section, fragment):
    from edgekit.recipe.schema import load_recipe

    path = write_recipe(f"name: f\ntask: fidelity\ndata: {{source: npz, path: x.npz}}\n{section}\n")
    with pytest.raises(RecipeError, match=fragment):
        load_recipe(path)


def _results(snr_int8: float, task: str = "fidelity") -> dict:
    from tests.conftest import real_row

    base = {"snr_db": 120.0, "max_abs_diff": 0.0}
    rows = [real_row("keras", "fp32", p50=1.0, metrics=base, baseline_metrics=base),
            real_row("tflite", "int8", p50=0.5, metrics={"snr_db": snr_int8, "max_abs_diff": 0.1}, baseline_metrics=base)]
    return {"primary_metric": "snr_db", "higher_is_better": True, "task": task, "baseline": rows[0]["id"], "rows": rows}


def test_check_min_metric_and_the_reference_drop():
    from edgekit.check.budgets import CheckSpec
    from edgekit.check.gate import compare

    def outcomes(spec, snr):
        return {(o.row, o.budget): o for o in compare(_results(snr), CheckSpec.model_validate(spec))}

    # The default drop budget (0.01) would fail every row against the 120 dB reference: skipped, with the fix.
    default = outcomes({}, 40.0)[("tflite-int8@cpu", "snr_db drop vs keras-fp32@cpu")]
    assert default.result == "skip" and "min_metric" in default.detail
    floor = {"defaults": {"min_metric": 30}}
    assert outcomes(floor, 40.0)[("tflite-int8@cpu", "snr_db min")].result == "pass"
    failed = outcomes(floor, 25.0)[("tflite-int8@cpu", "snr_db min")]
    assert failed.result == "fail" and failed.describe() == "tflite-int8@cpu snr_db min 25.0000 < 30.0000"
    explicit = outcomes({"defaults": {"max_metric_drop": 70}}, 40.0)[("tflite-int8@cpu", "snr_db drop vs keras-fp32@cpu")]
    assert explicit.result == "fail" and explicit.value == "80.0000"  # set by the recipe: applied, 120 - 40


def test_cells_show_the_reference_and_db():
    from edgekit.evaluate import layer_error
    from edgekit.report import cells as cells_module
    from edgekit.report.cells import cells

    assert cells_module.SNR_CAP == scores.SNR_CAP == layer_error.SNR_CAP  # one cap, three modules

    table = {row[0]: row for row in cells(_results(41.234))}
    assert table["keras-fp32@cpu"][6:8] == ["ref", "-"]
    # no delta against the reference's 120 dB cap (it was -78.8 dB: the cap, not a loss)
    assert table["tflite-int8@cpu"][6:8] == ["41.2 dB", "-"]
    results = _results(41.234)
    results["rows"][1]["metrics"]["top1_agreement"] = 0.975  # a classifier's outputs: agreement beside the SNR
    assert cells(results)[1][6] == "41.2 dB · top-1 0.9750"


MODEL_FILE_RECIPE = """
name: fid
task: fidelity
data: {source: npz, path: x.npz}
model: {file: clf.keras}
quantize: {calibration_samples: 32}
export: {formats: [tflite, onnx]}
benchmark: {warmup: 1, runs: 5, rounds: 1, inputs: 4, profile: false}
"""


@pytest.fixture(scope="module")
def fidelity_run(tmp_path_factory, digits):
    """A real build of a tf_keras classifier file on digits images saved as x only."""
    import tf_keras as keras

    folder = tmp_path_factory.mktemp("fidelity")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden)).save(folder / "clf.keras")
    np.savez(folder / "x.npz", x=digits[0][:160])
    recipe = folder / "fid.yaml"
    recipe.write_text(textwrap.dedent(MODEL_FILE_RECIPE))
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(folder / "cache")})
    result = runner.invoke(cli, ["build", str(recipe), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder, runner


def test_model_file_on_x_only_data_scores_every_row(fidelity_run):
    folder, _ = fidelity_run
    text = (folder / "run" / "results.json").read_text()
    results = json.loads(text)  # strict JSON: the reference's SNR is the cap, never Infinity
    assert "Infinity" not in text and results["primary_metric"] == "snr_db" and results["higher_is_better"]
    rows = {row["id"]: row for row in results["rows"]}
    assert set(rows) == {"keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu", "onnx-fp32@cpu", "onnx-int8@cpu"}
    assert all(row["status"] == "ok" for row in rows.values())
    assert rows["keras-fp32@cpu"]["metrics"]["snr_db"] == 120.0
    for fmt in ("tflite", "onnx"):
        fp32, int8 = rows[f"{fmt}-fp32@cpu"]["metrics"], rows[f"{fmt}-int8@cpu"]["metrics"]
        assert fp32["snr_db"] > 90 and fp32["top1_agreement"] == 1.0
        assert 20 < int8["snr_db"] < fp32["snr_db"] and int8["top1_agreement"] > 0.8 and int8["max_abs_diff"] > 0
        assert "snr_db" not in rows[f"{fmt}-int8@cpu"]["delta"]  # never taken against the 120 dB cap
        assert rows[f"{fmt}-int8@cpu"]["delta"]["top1_agreement"] == pytest.approx(int8["top1_agreement"] - 1.0)
    table = {line.split()[0]: line for line in _table_lines(results)}
    agreement = rows["tflite-int8@cpu"]["metrics"]["top1_agreement"]
    assert f"· top-1 {agreement:.4f}" in table["tflite-int8@cpu"]
    assert results["gate_metric"] == "snr_db"


def _table_lines(results: dict) -> list[str]:
    from rich.console import Console

    from edgekit.report.terminal import print_table

    console = Console(width=250, record=True)
    print_table(results, console)
    return [line for line in console.export_text().splitlines() if line.split()[:1] and line.split()[0].endswith("@cpu")]


def test_check_budget_on_snr_passes_and_fails(fidelity_run):
    folder, runner = fidelity_run
    recipe = (folder / "fid.yaml").read_text()
    (folder / "pass.yaml").write_text(recipe + "check: {defaults: {min_metric: 15}}\n")
    (folder / "fail.yaml").write_text(recipe + "check: {rules: [{rows: '*-int8@*', min_metric: 119}]}\n")
    passed = runner.invoke(cli, ["check", str(folder / "run"), "--recipe", str(folder / "pass.yaml")])
    assert passed.exit_code == 0, passed.output
    failed = runner.invoke(cli, ["check", str(folder / "run"), "--recipe", str(folder / "fail.yaml")])
    assert failed.exit_code == 1 and "tflite-int8@cpu snr_db min" in failed.output


def test_budgets_can_name_top1_agreement_and_the_best_pick_follows_it(fidelity_run, tmp_path):
    """A budget on the label-free classifier's top-1 agreement: judged on it (the default drop
    applies, nothing is at a cap), and the Pareto front and Results.best rank by it. The real
    run's int8 rows agree on every test sample here, so one copy gets an int8 row at 0.95."""
    import shutil

    from edgekit.api import load
    from edgekit.report.html import pareto_front

    folder, runner = fidelity_run
    run = tmp_path / "run"
    shutil.copytree(folder / "run", run)
    results = json.loads((run / "results.json").read_text())
    rows = {row["id"]: row for row in results["rows"]}
    rows["tflite-int8@cpu"]["metrics"]["top1_agreement"] = 0.95
    (run / "results.json").write_text(json.dumps(results))
    recipe = (folder / "fid.yaml").read_text()
    for name, budget in (("agree", "max_metric_drop: 0.06"), ("strict", "max_metric_drop: 0.03"),
                         ("typo", "max_metric_drop: 0.06, metric: top1_agreemnt")):
        metric = "" if "metric:" in budget else "metric: top1_agreement, "
        (tmp_path / f"{name}.yaml").write_text(recipe + f"check: {{defaults: {{{metric}{budget}}}}}\n")
    passed = runner.invoke(cli, ["check", str(run), "--recipe", str(tmp_path / "agree.yaml")])
    assert passed.exit_code == 0 and "tflite-int8@cpu  top1_agreement drop vs keras-fp32@cpu" in passed.output, passed.output
    failed = runner.invoke(cli, ["check", str(run), "--recipe", str(tmp_path / "strict.yaml")])
    assert failed.exit_code == 1 and "tflite-int8@cpu top1_agreement drop vs keras-fp32@cpu 0.0500 > 0.0300" in failed.output
    typo = runner.invoke(cli, ["check", str(run), "--recipe", str(tmp_path / "typo.yaml")])
    assert typo.exit_code == 1 and "'top1_agreemnt' is recorded by no ok row" in typo.output
    # The best pick ranks by the metric the budgets judge (results.json gate_metric), not by snr_db.
    front = pareto_front({**results, "gate_metric": "top1_agreement"})
    agreement = {row_id: row["metrics"]["top1_agreement"] for row_id, row in rows.items()}
    assert all(agreement[b] > agreement[a] for a, b in zip(front, front[1:]))  # each next point agrees more
    assert [r for r in front if agreement[r] == 1.0][:1] == [min((r for r in rows if agreement[r] == 1.0),
                                                                 key=lambda r: rows[r]["latency_ms"]["p50"])]
    assert load(run).best(max_drop=0.03) is None  # snr_db, the gate's metric so far, has no drop against its cap
    results["gate_metric"] = "top1_agreement"  # what a build writes for check: defaults: metric: top1_agreement
    (run / "results.json").write_text(json.dumps(results))
    best = load(run).best(max_drop=0.03)
    assert best is not None and best["id"] != "tflite-int8@cpu" and agreement[best["id"]] == 1.0
