"""Shared fixtures: tiny recipes, one shared tiny build, a tiny trained model, and GPU skipping."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own stage cache, never the user's ~/.cache/edgekit, and its own
    host and device locks (edgekit.locks): other builds on the machine never hold up its benchmarks."""
    os.environ["EDGEKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgekit-cache"))
    os.environ["EDGEKIT_LOCK_DIR"] = str(tmp_path_factory.mktemp("edgekit-locks"))

TINY_RECIPE = """
name: tiny
seed: 3
data:
  source: digits
model:
  arch: mlp
  params: {hidden: [96]}
train:
  epochs: 8
  batch_size: 32
  learning_rate: 0.01
quantize:
  calibration_samples: 64
benchmark:
  warmup: 2
  runs: 20
  inputs: 4
"""


#: TINY_RECIPE without the per-op profiles, for tests that never read a row's ``profile`` or
#: ``memory``: each row's probe is a fresh process (about 3 s a row on 2 busy cores)
TINY_UNPROFILED = TINY_RECIPE + "  profile: false\n"  # the benchmark section is TINY_RECIPE's last


#: the budgets of the shared tiny build: inert for the build, read by `edgekit check` from the
#: recipe.yaml beside its results
TINY_CHECK = """
check:
  defaults:
    max_metric_drop: 0.05
  rules:
    - rows: "*-int8@*"
      max_metric_drop: 0.08
    - rows: "tflite-*"
      max_size_bytes: 10000000
"""


@dataclass(frozen=True)
class TinyRun:
    """A finished build of TINY_RECIPE + TINY_CHECK. Read it, never write into it: copy
    ``dir`` first (shutil.copytree) to change a file, the other tests read the same folder."""

    dir: Path
    recipe: Path
    output: str
    exit_code: int

    @property
    def results(self) -> dict:
        """results.json, read afresh: a test may change its copy."""
        return json.loads((self.dir / "results.json").read_text())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """One real `edgekit build` of the tiny recipe, shared by every test that only reads a
    finished run. Its own stage cache: it trains and converts for real whatever ran before it."""
    from click.testing import CliRunner

    from edgekit.cli import cli

    folder = tmp_path_factory.mktemp("tiny-run")
    recipe = folder / "tiny.yaml"
    recipe.write_text(TINY_RECIPE + TINY_CHECK)
    run_dir = folder / "run"
    result = CliRunner(env={"EDGEKIT_CACHE_DIR": str(folder / "cache")}).invoke(cli, ["build", str(recipe), "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    return TinyRun(run_dir, recipe, result.output, result.exit_code)


def real_row(fmt: str, precision: str, *, p50: float | None = None, metrics: dict | None = None, status: str = "ok",
             reason: str | None = None, model: str = "base", target: str = "cpu", runtime: str | None = None,
             size_bytes: int | None = None, row_id: str | None = None, baseline_metrics: dict | None = None) -> dict:
    """A results row as a build writes it (``make_row``), from the few numbers a test cares about.

    ``p50`` becomes a measurement of three equal timings; ``size_bytes`` stands for an artifact
    file the test does not write; ``baseline_metrics`` are what ``delta`` is taken against.
    """
    from edgekit.report.rows import make_row
    from edgekit.targets import Measurement
    from edgekit.variant import Variant

    variant = Variant(format=fmt, precision=precision, model=model, metrics=dict(metrics or {}), runtime=runtime,
                      status="ok" if status in ("ok", "skipped") else status, reason=reason)
    measured = Measurement(status, reason, latencies_ms=[p50] * 3 if p50 is not None else None)
    baseline = Variant(format="keras", precision="fp32", metrics=dict(baseline_metrics or {}))
    row = make_row(row_id or f"{variant.stem}@{target}", variant, target, measured, baseline)
    return {**row, "size_bytes": size_bytes} if size_bytes is not None else row


def output_until(process, text: str) -> list[str]:
    """The lines ``process`` printed (text mode stdout) up to the first that holds ``text``; the
    test fails with what it printed where none does."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    pytest.fail("".join(lines))


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe file from YAML text (dedented) and return its path."""

    def write(text: str = TINY_RECIPE, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session")
def digits():
    """sklearn digits as float32 (N, 8, 8, 1) images in [0, 1] with int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[..., None], d.target.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_model(digits):
    """A small tf_keras CNN (about 10k parameters, enough that weights outweigh graph
    overhead in every format) trained a few epochs on digits."""
    import tf_keras as keras

    x, y = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400], y[:1400], epochs=15, batch_size=32, verbose=0)
    return model


#: the artifacts of ``tiny_artifacts``: fp32 and int8 in every built-in format
FORMAT_CASES = [(fmt, precision) for fmt in ("tflite", "onnx", "openvino") for precision in ("fp32", "int8")]


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_model, digits, tmp_path_factory):
    """The tiny CNN converted once per session: ``{(format, precision): path}`` for FORMAT_CASES."""
    from edgekit.formats import FORMATS

    folder = tmp_path_factory.mktemp("tiny-artifacts")
    x, _ = digits
    paths = {}
    for fmt_name, precision in FORMAT_CASES:
        fmt = FORMATS[fmt_name]
        paths[fmt_name, precision] = path = folder / f"{fmt_name}-{precision}{fmt.suffix}"
        fmt.load_converter()(tiny_model, path, precision, x[:100], {})
    return paths


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items):
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    skip = pytest.mark.skip(reason="no GPU visible to TensorFlow")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
