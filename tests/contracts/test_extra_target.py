"""The target-kind seam: a kind added from outside edgekit, through ``edgekit.targets.register`` alone.

"subpython" times the artifacts in another Python on this machine (a virtual environment with
other runtime versions, say), named by a device profile ``kind: subpython`` with ``python:``:
the device runner an ssh device gets (``edgekit.targets.job``) runs there in a local process.
This module is the whole kind (its profile schema, its Target class, its check); nothing in
edgekit names it. It offers the format table's SESSION, so every format whose row lists it runs
there, and a build of the shared tiny recipe, ``edgekit bench`` and ``edgekit devices check``
use it like a built-in kind. The build reuses the shared tiny build's cache: only the new
target's rows are timed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner
from pydantic import Field

from edgekit import targets
from edgekit.cli import cli
from edgekit.formats import FORMATS, SESSION
from edgekit.targets import Measurement, Target
from edgekit.targets import job as jobs
from edgekit.targets.profiles import ProfileBase
from edgekit.targets.runner import decode_array
from tests.conftest import TINY_RECIPE

EDGEKIT = Path(__file__).resolve().parents[2] / "edgekit"
KIND = "subpython"


# --------------------------------------------------------------------------- the kind


class SubpythonProfile(ProfileBase):
    """devices/NAME.yaml of kind subpython."""

    kind: Literal["subpython"] = Field(description="subpython: the device runner in another Python on this machine")
    python: str = Field(sys.executable, min_length=1, description="the Python that runs the artifacts")

    def describe(self) -> str:
        return f"{self.python} on this machine"


class SubpythonTarget(Target):
    """Every row its Python has a runtime for, in one runner process, in interleaved rounds; the
    outputs come back, so the row's metrics are that Python's."""

    kind = KIND
    evaluates = True
    interleaves = True
    offers = frozenset({SESSION})
    profile_model = SubpythonProfile

    def __init__(self, profile: SubpythonProfile, log=None):
        self.profile, self.name, self.log = profile, profile.name, log
        self._environment: dict = {}

    def supports(self, variant) -> bool:
        return self.runs_format(FORMATS.get(variant.format))

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        return self.measure_all([variant], spec, samples, eval_inputs)[0]

    def measure_all(self, variants, spec, samples, eval_inputs=None, seed: int = 0, sample_sets=None):
        entries = [(FORMATS[v.format], v.files, list(FORMATS[v.format].runtime_packages),
                    {k: x for k, x in v.settings.items() if isinstance(x, (str, int, float, bool))}) for v in variants]
        payload = jobs.group_job_files(entries, samples if samples is not None else sample_sets[0], eval_inputs,
                                       warmup=spec.warmup, runs=spec.runs, min_time_s=spec.min_time_s,
                                       threads=spec.threads, rounds=spec.rounds, seed=seed, bench_sets=sample_sets)
        with tempfile.TemporaryDirectory(prefix="edgekit-subpython-") as tmp:
            for relative, content in payload.items():
                (Path(tmp) / relative).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / relative).write_bytes(content if isinstance(content, bytes) else Path(content).read_bytes())
            done = subprocess.run([self.profile.python, jobs.RUNNER_NAME, "job.json"], cwd=tmp, capture_output=True,
                                  timeout=300, check=False)
        result = jobs.result_payload(done.stdout)
        if result is None or "error" in result:
            why = (result or {}).get("error") or done.stderr.decode(errors="replace")[-300:]
            return [Measurement("failed", f"{self.name}: {why}") for _ in variants]
        self._environment = {**result["environment"], "device": self.name, "interpreter": self.profile.python}
        return [Measurement("failed", f"{self.name}: {row['error']}") if "error" in row else
                Measurement("ok", latencies_ms=row["latencies_ms"], rounds_ms=row["rounds_ms"], runtime=row["runtime"],
                            interleaved=bool(row.get("interleaved")), settings=row["settings"],
                            outputs=decode_array(row["outputs"]) if row.get("outputs") else None,
                            environment=self._environment, device=self.name, measured_at=time.time())
                for row in result["rows"]]

    def check(self, say) -> list[str]:
        done = subprocess.run([self.profile.python, "-c", "import numpy, sys; print(sys.version.split()[0], numpy.__version__)"],
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            return [f"{self.profile.python} cannot import numpy"]
        python, numpy = done.stdout.split()
        say(f"  python       {python}, numpy {numpy} ({self.profile.python})")
        return []

    def environment(self) -> dict:
        return self._environment or {"device": self.name, "interpreter": self.profile.python}

    def cache_identity(self) -> dict:
        return {**super().cache_identity(), "python": self.profile.python}


# --------------------------------------------------------------------------- a build and a bench with it


@pytest.fixture(scope="module")
def used(tiny_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("extra-target")
    (folder / "devices").mkdir()
    (folder / "devices" / "box.yaml").write_text(f"kind: {KIND}\npython: {sys.executable}\n")
    recipe = folder / "tiny.yaml"
    # one timing of the new rows even on a busy machine (the cpu rows' cache key leaves this out)
    assert "  inputs: 4\n" in TINY_RECIPE
    recipe.write_text(TINY_RECIPE.replace("  inputs: 4\n", "  inputs: 4\n  retime_unstable: 0\n") + "targets: [cpu, box]\n")
    # the shared tiny build's cache, copied: training, conversions and the cpu rows come from it
    shutil.copytree(tiny_run.dir.parent / "cache", folder / "cache")
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(folder / "cache")})
    artifact = tiny_run.dir / "artifacts" / "tflite-int8.tflite"
    devices = ["--devices", str(folder / "devices")]
    with targets.registered(KIND, f"{__name__}:SubpythonTarget"):
        build = runner.invoke(cli, ["build", str(recipe), "--out", str(folder / "run")])
        assert build.exit_code == 0, build.output
        bench = runner.invoke(cli, ["bench", str(artifact), "--target", "cpu", "--target", "box", "--runs", "5",
                                    "--warmup", "1", *devices, "--out", str(folder / "bench.json")])
        assert bench.exit_code == 0, bench.output
        check = runner.invoke(cli, ["devices", "check", "box", *devices])
    assert KIND not in targets.KINDS  # the table is as it was for every other test
    return {"folder": folder, "recipe": recipe, "build": build.output, "check": check}


def test_nothing_in_edgekit_names_the_extra_kind():
    """The kind is this module alone: no edgekit file had to learn about it."""
    assert not [p for p in EDGEKIT.rglob("*.py") if KIND in p.read_text()]


def test_a_build_times_and_evaluates_every_session_format_on_it(used, tiny_run):
    results = json.loads((used["folder"] / "run" / "results.json").read_text())
    rows = {r["id"]: r for r in results["rows"]}
    cpu = {r["id"][: -len("@cpu")]: r for r in tiny_run.results["rows"] if r["id"].endswith("@cpu")}
    box = {i[: -len("@box")]: r for i, r in rows.items() if i.endswith("@box")}
    # every artifact format offers SESSION: all of the cpu's rows but the Keras model, which is no format
    assert set(box) == set(cpu) - {"keras-fp32"} and box
    for stem, row in box.items():
        if cpu[stem]["status"] != "ok":
            continue
        assert row["status"] == "ok", row
        assert row["latency_ms"]["runs"] >= 20 and row["latency_ms"]["p50"] > 0
        # the metrics come from the outputs the other Python returned (Target.evaluates): the same model, the same decisions
        assert row["metrics"]["accuracy"] == pytest.approx(cpu[stem]["metrics"]["accuracy"], abs=0.01), stem
        assert row["runtime"].split()[0] == cpu[stem]["runtime"].split()[0]
    assert results["targets"]["box"]["interpreter"] == sys.executable
    assert [r["id"] for r in results["rows"]][:len(cpu)] == list(rows)[:len(cpu)]  # the cpu rows first, the baseline kept
    assert results["baseline"] == "keras-fp32@cpu"
    # only the new target was measured: the rest came from the shared build's cache
    assert {f"{s}@cpu" for s in cpu} <= set(results["reused"]["bench"])
    assert not {f"{s}@box" for s in box} & set(results["reused"]["bench"])


def test_edgekit_bench_times_a_file_on_it(used):
    bench = json.loads((used["folder"] / "bench.json").read_text())
    rows = {r["id"]: r for r in bench["rows"]}
    assert rows["tflite-int8.tflite@box"]["status"] == "ok", rows
    assert rows["tflite-int8.tflite@box"]["latency_ms"]["runs"] >= 5
    # the probe (per-op profile, memory) runs for the host's rows only (Target.probes_here)
    assert rows["tflite-int8.tflite@cpu"].get("memory") is not None
    assert rows["tflite-int8.tflite@box"].get("memory") is None


def test_devices_check_asks_the_kind(used, tmp_path):
    check = used["check"]
    assert check.exit_code == 0, check.output
    assert "numpy" in check.output and check.output.strip().endswith("device box: ready")
    # a kind with nothing to check says so, exit 1
    refused = CliRunner().invoke(cli, ["devices", "check", "cpu", "--devices", str(tmp_path)])
    assert refused.exit_code == 1 and "target kind cpu has nothing for devices check to check" in refused.output


def test_an_unregistered_kind_is_refused_again(used):
    result = CliRunner().invoke(cli, ["validate", str(used["recipe"])])
    assert result.exit_code == 2 and f"unknown target kind '{KIND}'" in result.output, result.output


def test_register_refuses_a_class_of_another_kind():
    with pytest.raises(ValueError, match="kind = 'other'"):
        targets.register("other", f"{__name__}:SubpythonTarget")
    assert "other" not in targets.KINDS
