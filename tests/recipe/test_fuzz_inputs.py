"""Property tests: generated recipes and data files never end in a traceback.

Whatever hypothesis makes (wrong types, NaN, infinities, huge integers, NUL bytes, odd shapes,
empty arrays, string or huge labels, broken CSV), `edgekit validate` exits 0 or 2, and exit 2
says why in one line. Seeded (derandomize) so CI sees the same cases every run; sized to
about 1,200 cases in well under a minute on 2 cores.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgekit.cli import cli
from edgekit.data import load_dataset
from edgekit.recipe.schema import load_recipe

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Values of every kind YAML can hold, biased towards the ones that broke edgekit before.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([0, 1, -1, 2**32, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0, 1e308]),
    st.text(max_size=20), st.sampled_from(["", "\x00", "a\x00b", "x" * 300, "../../etc/passwd", "/etc/passwd",
                                           "digits", "npz", "csv", "cpu", "gpu", "int8", "tflite", "mlp"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)

# The recipe's own keys, so mutations land where the schema looks, not only on unknown keys.
SECTIONS = {
    "data": ["source", "path", "label_column", "test_fraction", "val_fraction", "normalize", "normalize_per",
             "embed_normalization"],
    "model": ["arch", "python", "params", "file", "safe_mode"],
    "train": ["epochs", "batch_size", "optimizer", "learning_rate", "early_stopping_patience"],
    "quantize": ["precisions", "calibration_samples"],
    "export": ["formats", "tflite", "onnx", "openvino"],
    "benchmark": ["warmup", "runs", "min_time_s", "threads", "inputs"],
    "check": ["defaults", "rules"],
}
TOP = ["name", "seed", "task", "targets", "compress", *SECTIONS]


@st.composite
def recipes(draw) -> dict:
    recipe = {"name": "fuzz", "seed": 0, "data": {"source": "npz", "path": "data.npz"}, "model": {"arch": "mlp"},
              "train": {"epochs": 1}}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(TOP))
        if section in SECTIONS and draw(st.booleans()):
            target = recipe.setdefault(section, {})
            if not isinstance(target, dict):
                target = recipe[section] = {}
            target[draw(st.sampled_from(SECTIONS[section]))] = draw(values)
        else:
            recipe[section] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        recipe[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return recipe


def _assert_one_line_or_ok(result) -> None:
    assert not (result.exception and not isinstance(result.exception, SystemExit)), (
        f"{type(result.exception).__name__}: {result.exception}")
    assert result.exit_code in (0, 2), result.output
    event(f"exit {result.exit_code}")  # shown by --hypothesis-show-statistics: both outcomes are explored
    event(re.sub(r"[0-9/]+", "", result.output.split(": ", 2)[-1])[:45])
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert len(lines[0]) < 2000, lines[0][:300]


_FOLDER = Path(tempfile.mkdtemp(prefix="edgekit-fuzz-"))
_GOOD = np.random.default_rng(0)
np.savez(_FOLDER / "data.npz", x=_GOOD.normal(size=(60, 4)).astype(np.float32), y=np.arange(60) % 3)


@fuzz(1000)
@given(recipe=recipes(), raw=st.booleans(), noise=st.binary(max_size=40))
def test_generated_recipes_give_exit_0_or_one_line(recipe, raw, noise):
    path = _FOLDER / "recipe.yaml"
    text = yaml.safe_dump(recipe, allow_unicode=True).encode()
    if raw:  # bytes spliced into the text: broken YAML, bad encodings, stray tabs
        cut = len(text) // 2
        text = text[:cut] + noise + text[cut:]
    path.write_bytes(text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    _assert_one_line_or_ok(result)
    if result.exit_code == 0:
        loaded = load_recipe(path)
        assert 0 <= loaded.seed < 2**32 and loaded.benchmark.min_time_s <= 3600


# Weighted towards arrays that load, so the valid path is explored as well as the refusals.
DTYPES = [np.float32] * 6 + [np.float64, np.int64, np.uint8, np.int8, np.bool_, np.complex64, np.float16]


@st.composite
def arrays(draw, samples: int, label: bool = False) -> np.ndarray:
    dtype = draw(st.sampled_from(([np.int64] * 10 + ["U3"] + DTYPES) if label else DTYPES))
    extra = [] if label and draw(st.integers(0, 3)) else draw(st.lists(st.integers(1, 4) | st.integers(0, 4), max_size=3))
    shape = (samples, *extra)
    rng = np.random.default_rng(samples)
    if dtype == "U3":
        return np.array(draw(st.lists(st.sampled_from(["a", "b", ""]), min_size=samples, max_size=samples)), dtype="U3")
    if label:
        kind = draw(st.sampled_from(["three", "three", "three", "two", "one", "huge", "negative"]))
        values = {"three": lambda: np.arange(samples).reshape(-1, *[1] * len(extra)) % 3 + np.zeros(shape),
                  "two": lambda: rng.integers(0, 2, size=shape), "one": lambda: np.ones(shape),
                  "huge": lambda: np.full(shape, 10**9), "negative": lambda: -np.ones(shape)}[kind]()
    else:
        values = rng.normal(size=shape) * draw(st.sampled_from([1.0, 1.0, 1e300, 1e-300]))
    values = np.asarray(values, dtype=np.float64)
    if values.size and draw(st.integers(0, 5)) == 0:
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    with np.errstate(all="ignore"):
        return values.astype(dtype)


@st.composite
def data_files(draw) -> tuple[str, dict]:
    """An npz in one of the two layouts (sometimes a broken one), or a csv."""
    kind = draw(st.sampled_from(["xy", "split", "csv", "broken"]))
    if kind == "csv":
        header = draw(st.lists(st.sampled_from(["a", "b", "label", ""]), min_size=1, max_size=4))
        body = draw(st.lists(st.lists(st.sampled_from(["1", "0.5", "x", "nan", "inf", "", "1e400", "2"]),
                                      min_size=len(header), max_size=len(header) + (draw(st.integers(0, 1)))), max_size=30))
        return "csv", {"text": "\n".join(",".join(r) for r in [header, *body])}
    if kind == "broken":
        return "npz", {"raw": draw(st.binary(max_size=64))}
    n = draw(st.integers(12, 40) | st.integers(0, 40))
    if kind == "xy":
        return "npz", {"x": draw(arrays(n)), "y": draw(arrays(draw(st.sampled_from([n, n, n + 1])), label=True))}
    m = draw(st.integers(3, 12) | st.integers(0, 12))
    return "npz", {"x_train": draw(arrays(n)), "y_train": draw(arrays(n, label=True)),
                   "x_test": draw(arrays(m)), "y_test": draw(arrays(m, label=True))}


@fuzz(1000)
@given(data=data_files(), task=st.sampled_from(["classification", "regression", "anomaly"]),
       normalize=st.sampled_from(["none", "standard", "minmax"]))
def test_generated_data_files_give_exit_0_or_one_line(data, task, normalize):
    kind, content = data
    folder = Path(tempfile.mkdtemp(dir=_FOLDER))
    file = folder / f"data.{kind}"
    if "text" in content:
        file.write_text(content["text"])
    elif "raw" in content:
        file.write_bytes(content["raw"])
    else:
        np.savez(file, **content)
    arch = "autoencoder" if task == "anomaly" else "mlp"
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"name: fuzz\ntask: {task}\ndata: {{source: {kind}, path: {file.name}, normalize: {normalize}}}\n"
                      f"model: {{arch: {arch}}}\n")
    result = CliRunner().invoke(cli, ["validate", str(recipe)])
    _assert_one_line_or_ok(result)
    if result.exit_code == 0:  # what a build would train on is usable
        spec = load_recipe(recipe)
        data_set = load_dataset(spec.data, 0, 16, task=task)
        for split in (data_set.x_train, data_set.x_test):
            assert len(split) > 0 and np.isfinite(split).all()
        assert data_set.x_test.shape[1:] == data_set.x_train.shape[1:]
        if task == "classification":
            assert set(np.unique(data_set.y_train)) == set(range(data_set.num_classes))
