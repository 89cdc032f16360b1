"""The format seam: a format added from outside edgekit, through the format table alone.

"npref" is the Keras MLP's weights in an .npz file, run by a NumPy reference session. This
module (converter, options, table row) and npref_runtime.py (the session) are the whole
format; nothing in edgekit/ names it. A real build then converts, evaluates, benchmarks and
reports it like the built-in formats, the cache reuses it, ``edgekit bench`` times its file,
and the device runner runs it from the very files an ssh device receives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit import formats
from edgekit.cli import cli
from edgekit.formats import Format, FormatOptions

EDGEKIT = Path(__file__).resolve().parents[2] / "edgekit"


# --------------------------------------------------------------------------- the format


class NprefOptions(FormatOptions):
    """``export.npref`` in a recipe."""

    accumulate: Literal["float32", "float64"] = "float32"


def convert(model, path: Path, precision: str, calibration, options: dict | None = None, prequantized: bool = False) -> dict:
    """Write a Flatten + Dense model's kernels, biases and activations into ``path`` (.npz)."""
    dtype = np.float16 if precision == "fp16" else np.float32
    arrays, activations = {}, []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Flatten", "Dropout"):
            continue
        if kind != "Dense":
            raise ValueError(f"npref runs Flatten + Dense models only, not {kind}")
        kernel, bias = layer.get_weights()
        arrays[f"kernel{len(activations)}"], arrays[f"bias{len(activations)}"] = kernel.astype(dtype), bias.astype(dtype)
        activations.append(layer.get_config()["activation"])
    np.savez(path, activations=np.array(activations), input_shape=np.array(model.input_shape[1:]), **arrays)
    return {"layers": len(activations), "weights_dtype": np.dtype(dtype).name}


def read_weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[name] for name in saved.files if name.startswith(("kernel", "bias"))]


NPREF = Format(
    name="npref",
    suffix=".npz",
    precisions=("fp32", "fp16"),
    converter=f"{__name__}:convert",
    # The session has a module of its own: it travels to devices, where pytest and pydantic are not.
    runtime="tests.contracts.npref_runtime:open_session",
    weights=f"{__name__}:read_weights",
    runtime_packages=("numpy",),
    description="a Flatten + Dense model's weights in .npz, run by a NumPy reference session",
    options=NprefOptions,
    label="NumPy ref",
    runs_with=(formats.SESSION,),
    packages=("numpy",),
)

RECIPE = """
name: extra
seed: 1
data: {source: digits}
model: {arch: mlp, params: {hidden: [24]}}
train: {epochs: 3, learning_rate: 0.01, early_stopping_patience: 0}
quantize: {precisions: [fp32, fp16, int8], calibration_samples: 32}
export: {formats: [tflite, npref], npref: {accumulate: float64}}
benchmark: {warmup: 1, runs: 7, inputs: 3, profile: false}
"""


# --------------------------------------------------------------------------- one build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extra-format")
    recipe = folder / "extra.yaml"
    recipe.write_text(RECIPE)
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(folder / "cache")})
    with formats.registered(NPREF):
        first = runner.invoke(cli, ["build", str(recipe), "--out", str(folder / "run")])
        assert first.exit_code == 0, first.output
        again = runner.invoke(cli, ["build", str(recipe), "--out", str(folder / "again")])
        assert again.exit_code == 0, again.output
        table = runner.invoke(cli, ["table", str(folder / "run")])
        assert table.exit_code == 0, table.output
        report = runner.invoke(cli, ["report", str(folder / "run")])
        assert report.exit_code == 0, report.output
        artifact = folder / "run" / "artifacts" / "npref-fp32.npz"
        bench = runner.invoke(cli, ["bench", str(artifact), "--runs", "5", "--warmup", "1", "--no-profile",
                                    "--out", str(folder / "bench.json")])
        assert bench.exit_code == 0, bench.output
    assert "npref" not in formats.FORMATS  # the table is as it was for every other test
    return {"folder": folder, "recipe": recipe, "table": table.output}


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_nothing_in_edgekit_names_the_extra_format():
    """The format is this module alone: no edgekit file had to learn about it."""
    assert not [p for p in EDGEKIT.rglob("*.py") if "npref" in p.read_text()]


def test_it_is_converted_evaluated_and_benchmarked_like_the_built_in_formats(built):
    results = _results(built["folder"] / "run")
    rows = {r["id"]: r for r in results["rows"]}
    keras = rows["keras-fp32@cpu"]
    for precision in ("fp32", "fp16"):
        row = rows[f"npref-{precision}@cpu"]
        assert row["status"] == "ok", row
        assert row["format"] == "npref" and row["size_bytes"] > 0
        # The NumPy reference computes what Keras computes: same decisions, outputs equal to float error.
        assert row["metrics"]["accuracy"] == pytest.approx(keras["metrics"]["accuracy"], abs=0.01)
        assert row["latency_ms"]["runs"] >= 7 and row["latency_ms"]["p50"] > 0
        assert row["runtime"].startswith("numpy ")
        assert row["settings"]["accumulate"] == "float64"  # export.npref reached the session
    assert rows["npref-fp32@cpu"]["settings"]["weights_dtype"] == "float32"
    assert rows["npref-fp16@cpu"]["settings"]["weights_dtype"] == "float16"
    assert rows["npref-fp16@cpu"]["size_bytes"] < rows["npref-fp32@cpu"]["size_bytes"]
    assert "npref-int8@cpu" not in rows
    assert any(item["id"] == "npref-int8" and "no int8 converter" in item["reason"] for item in results["not_produced"])
    assert rows["tflite-int8@cpu"]["status"] == "ok"  # the built-in formats are untouched
    assert (built["folder"] / "run" / "artifacts" / "npref-fp32.npz").is_file()


def test_its_packages_are_recorded_and_it_is_cached(built):
    again = _results(built["folder"] / "again")
    assert "numpy" in again["environment"]["packages"]
    assert {"npref-fp32", "npref-fp16"} <= set(again["reused"]["convert"])
    assert {"npref-fp32", "npref-fp16"} <= set(again["reused"]["evaluate"])
    assert {"npref-fp32@cpu", "npref-fp16@cpu"} <= set(again["reused"]["bench"])


def test_it_is_listed_in_every_report(built):
    run = built["folder"] / "run"
    assert "npref-fp32@cpu" in (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    assert "npref-fp16@cpu" in html
    header, _, line = built["table"].splitlines()[:3]
    columns = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|"))))
    assert "int8 NumPy ref" in columns
    assert cells["p50 NumPy ref fp32 / int8"].split(" / ")[0] != "-"  # the fp32 latency is there
    assert cells["p50 NumPy ref fp32 / int8"].split(" / ")[1] == "-"  # no int8 converter


def test_edgekit_bench_times_its_file(built):
    bench = json.loads((built["folder"] / "bench.json").read_text())
    (row,) = bench["rows"]
    assert row["id"] == "npref-fp32.npz@cpu" and row["status"] == "ok", row
    assert row["format"] == "npref" and row["latency_ms"]["runs"] >= 5
    assert row["input_shape"] == [8, 8, 1]


def test_an_unregistered_format_is_refused_again(built, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    # export.npref is an unknown key again (and export.formats an unknown format): a usage error
    assert result.exit_code == 2 and "export.npref: unknown key" in result.output, result.output


def test_a_registered_format_validates_its_options():
    from edgekit.errors import RecipeError
    from edgekit.recipe.schema import Recipe, load_recipe

    with formats.registered(NPREF):
        assert Recipe.model_validate({"name": "x", "model": {"arch": "mlp"}}).export.npref.accumulate == "float32"
    with formats.registered(NPREF), pytest.raises(RecipeError, match=r"export\.npref\.accumulate"):
        path = EDGEKIT.parent / "tests" / "contracts" / "_bad_npref.yaml"
        try:
            path.write_text(RECIPE.replace("float64", "float16"))
            load_recipe(path)
        finally:
            path.unlink()


def test_a_format_row_pickles_for_a_worker_process():
    import pickle

    assert pickle.loads(pickle.dumps(NPREF)) == NPREF


def test_the_device_runner_runs_it_from_what_a_device_receives(built, tmp_path):
    """The files an ssh device gets (runner, session module, job, artifact, inputs), unpacked in
    an empty folder and run there by a plain Python: the same outputs as the local session."""
    import subprocess
    import sys

    from edgekit.targets.job import job_files, result_payload

    artifact = built["folder"] / "run" / "artifacts" / "npref-fp32.npz"
    x = np.random.default_rng(0).random((20, 8, 8, 1), dtype=np.float32)
    for relative, content in job_files(NPREF, [artifact], ["numpy"], x[:3], x, warmup=1, runs=5,
                                       options={"accumulate": "float64"}).items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else Path(content).read_bytes())
    # -I: no user site, no PYTHONPATH: only what was unpacked (the stub edgekit, the session) imports
    done = subprocess.run([sys.executable, "-I", "runner.py", "job.json"], cwd=tmp_path, capture_output=True, timeout=120)
    payload = result_payload(done.stdout)
    assert payload is not None and "error" not in payload, (payload, done.stderr.decode()[-2000:])
    from edgekit.targets.runner import decode_array
    from tests.contracts.npref_runtime import open_session

    local = open_session(artifact, 1, {"accumulate": "float64"}).predict(x)
    np.testing.assert_array_equal(decode_array(payload["outputs"]), local)
    assert len(payload["latencies_ms"]) == 5 and payload["settings"]["accumulate"] == "float64"
