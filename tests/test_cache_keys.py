"""Cache keys follow the code and the packages that make each entry.

Builds run from a temporary copy of the edgekit package (PYTHONPATH) with a shared cache;
editing one file of the copy must recompute exactly the entries that file's code made.
Every check reads what ran (results.json ``reused``, manifest.json), never timing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit import formats
from edgekit.cache import make_key, source_hash

EDGEKIT = Path(__file__).resolve().parents[1] / "edgekit"

RECIPE = """
name: keys
seed: 0
data: {source: digits}
model: {arch: mlp, params: {hidden: [16]}}
train: {epochs: 2, learning_rate: 0.01, early_stopping_patience: 0}
quantize: {precisions: [fp32, int8], calibration_samples: 32}
export: {formats: [tflite, onnx]}  # the two whose code is edited below: each the other's bystander
benchmark: {warmup: 1, runs: 5, inputs: 2}
"""


class Copy:
    """A copy of the edgekit package that builds run from, all sharing one cache."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.src = folder / "src"
        shutil.copytree(EDGEKIT, self.src / "edgekit", ignore=shutil.ignore_patterns("__pycache__"))
        self.recipe = folder / "keys.yaml"
        self.recipe.write_text(RECIPE)
        self.runs = 0

    def edit(self, relative: str) -> None:
        """Change a source file without changing what it does."""
        with open(self.src / "edgekit" / relative, "a") as handle:
            handle.write("\n# edited by tests/test_cache_keys.py\n")

    def build(self) -> tuple[dict, dict]:
        """Build in a fresh process from the copy; (results.json, {stage: names computed})."""
        self.runs += 1
        out = self.folder / f"run{self.runs}"
        env = {**os.environ, "PYTHONPATH": str(self.src), "EDGEKIT_CACHE_DIR": str(self.folder / "cache")}
        done = subprocess.run([sys.executable, "-m", "edgekit", "build", str(self.recipe), "--out", str(out)],
                              cwd=self.folder, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        manifest = json.loads((out / "manifest.json").read_text())
        computed: dict[str, set] = {}
        for event in manifest["stages"]:
            if not event["reused"]:
                computed.setdefault(event["stage"], set()).add(event["name"])
        return json.loads((out / "results.json").read_text()), computed


CPU_ROWS = {"keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu", "onnx-fp32@cpu", "onnx-int8@cpu"}


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    copy = Copy(folder)
    check = subprocess.run([sys.executable, "-c", "import edgekit; print(edgekit.__file__)"], cwd=folder,
                           env={**os.environ, "PYTHONPATH": str(copy.src)}, capture_output=True, text=True, check=True)
    assert check.stdout.strip() == str(copy.src / "edgekit" / "__init__.py")  # the copy runs, not the checkout
    results, computed = copy.build()
    assert not any(results["reused"].values())
    assert computed["convert"] == {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"}
    return copy


@pytest.mark.slow
def test_editing_a_converter_recomputes_only_its_format(copy):
    copy.edit("convert/tflite.py")
    results, computed = copy.build()
    assert computed.pop("convert") == {"tflite-fp32", "tflite-int8"}
    assert computed.pop("evaluate") == {"tflite-fp32", "tflite-int8"}
    # the cpu rows are timed together, in interleaved rounds: any new artifact times them all again
    assert computed.pop("bench") == CPU_ROWS
    assert computed.pop("profile") == {"tflite-fp32@cpu", "tflite-int8@cpu"}  # probed afresh: new artifacts
    assert not computed  # nothing else: training and the other formats came from the cache
    assert results["reused"]["train"] == ["base"]
    assert sorted(results["reused"]["convert"]) == ["onnx-fp32", "onnx-int8"]
    assert all(row["status"] == "ok" for row in results["rows"])


@pytest.mark.slow
def test_editing_a_runtime_session_reevaluates_only_its_format(copy):
    copy.edit("runtimes/onnxruntime.py")
    copy.edit("models/lenet.py")  # another zoo builder than the recipe's: its model is not retrained
    results, computed = copy.build()
    assert "convert" not in computed and "train" not in computed  # the artifacts are the same files
    assert computed.pop("evaluate") == {"onnx-fp32", "onnx-int8"}
    assert computed.pop("bench") == CPU_ROWS  # timed together: the group's code changed
    assert computed.pop("profile") == {"onnx-fp32@cpu", "onnx-int8@cpu"}  # the probe runs the session's code
    assert not computed
    assert results["reused"]["train"] == ["base"]


@pytest.mark.slow
def test_editing_the_recipes_zoo_builder_retrains(copy):
    copy.edit("models/mlp.py")
    results, computed = copy.build()
    assert computed["train"] == {"base"} and computed["convert"] == {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"}
    assert results["reused"]["train"] == [] and results["reused"]["convert"] == []


def test_a_source_hash_follows_the_file(tmp_path, monkeypatch):
    module = tmp_path / "hashed_module_for_keys.py"
    module.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = source_hash("hashed_module_for_keys")
    assert source_hash("hashed_module_for_keys") == first  # cached per process: the code that runs
    from edgekit import cache

    cache._SOURCE_HASHES.pop("hashed_module_for_keys")
    module.write_text("X = 2\n")
    assert source_hash("hashed_module_for_keys") != first
    assert source_hash("edgekit.compress.*") != source_hash("edgekit.compress")  # the package vs its __init__
    with pytest.raises(ValueError, match="cannot hash the source of no_such_module_here"):
        source_hash("no_such_module_here")


def test_keys_hold_edgekit_version(monkeypatch):
    import edgekit

    before = make_key("convert", format="tflite")
    monkeypatch.setattr(edgekit, "__version__", "999.0")
    assert make_key("convert", format="tflite") != before


def test_a_format_is_keyed_by_its_own_packages_only():
    installed = {"tensorflow": "2.21", "tf-keras": "2.21", "openvino": "2025.1", "nncf": "2.16", "onnxruntime": "1.22",
                 "ai-edge-litert": "2.0", "tf2onnx": "1.17", "onnx": "1.18"}
    tflite = formats.FORMATS["tflite"].versions(installed)
    upgraded = formats.FORMATS["tflite"].versions({**installed, "openvino": "2026.0", "nncf": "3.0"})
    assert tflite == upgraded and "openvino" not in tflite and tflite["ai-edge-litert"] == "2.0"
    assert formats.FORMATS["openvino"].versions(installed)["openvino"] == "2025.1"
    from edgekit import environment

    # results.json records every package some format names
    assert {p for fmt in formats.FORMATS.values() for p in fmt.packages} <= set(environment.package_names())
