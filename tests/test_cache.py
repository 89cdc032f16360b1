"""The stage cache: reruns redo only what changed, killed builds resume, Ctrl-C writes what it has.

Every check is on what ran (results.json "reused", manifest.json), never on timing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cache import STALE_S, Cache, _temp_prefix, verify, write_manifest
from edgekit.cli import cli

RECIPE = """
name: cached
seed: {seed}
data: {{source: digits}}
model: {{arch: mlp, params: {{hidden: [32]}}}}
train: {{epochs: {epochs}, learning_rate: 0.01, early_stopping_patience: 0}}
quantize: {{calibration_samples: 32}}
export: {{formats: {formats}}}
benchmark: {{warmup: 1, runs: {runs}, inputs: 2, profile: false}}
"""


def _recipe(folder: Path, seed=0, epochs=3, formats="[tflite]", runs=5) -> Path:
    path = folder / f"r-{seed}-{epochs}-{formats.strip('[]').replace(', ', '_')}-{runs}.yaml"
    path.write_text(RECIPE.format(seed=seed, epochs=epochs, formats=formats, runs=runs))
    return path


def _build(recipe: Path, out: Path, cache: Path, *extra: str) -> dict:
    result = CliRunner(env={"EDGEKIT_CACHE_DIR": str(cache)}).invoke(cli, ["build", str(recipe), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def _table(results: dict) -> list[tuple]:
    """Everything a user compares in the table, latency and size aside (see _same_sizes)."""
    return [(r["id"], r["status"], json.dumps(r["metrics"], sort_keys=True)) for r in results["rows"]]


def _same_sizes(a: dict, b: dict) -> bool:
    """Sizes within 64 bytes: two processes write files a few bytes apart (Keras stores the save
    time in a .keras file; traced function names carry a per-process counter into .tflite)."""
    return all(abs((x["size_bytes"] or 0) - (y["size_bytes"] or 0)) <= 64 for x, y in zip(a["rows"], b["rows"]))


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    cache = folder / "cache"
    results = _build(_recipe(folder), folder / "run1", cache)
    return folder, cache, results


def test_a_first_build_computes_everything(first):
    _, _, results = first
    assert all(not names for names in results["reused"].values())


def test_an_unchanged_rerun_reuses_every_stage(first):
    folder, cache, results = first
    again = _build(_recipe(folder), folder / "run2", cache)
    assert again["reused"]["train"] == ["base"]
    assert sorted(again["reused"]["convert"]) == ["tflite-fp32", "tflite-int8"]
    assert len(again["reused"]["bench"]) == 3
    assert _table(again) == _table(results)
    assert [r["size_bytes"] for r in again["rows"]] == [r["size_bytes"] for r in results["rows"]]  # the very same files
    manifest = json.loads((folder / "run2" / "manifest.json").read_text())
    assert all(event["reused"] for event in manifest["stages"])
    assert {a["id"] for a in manifest["artifacts"]} == {"keras-fp32", "tflite-fp32", "tflite-int8"}


def test_changing_benchmark_settings_only_rebenchmarks(first):
    folder, cache, _ = first
    results = _build(_recipe(folder, runs=7), folder / "run3", cache)
    assert results["reused"]["train"] == ["base"] and len(results["reused"]["convert"]) == 2
    assert results["reused"]["bench"] == []
    assert all(row["latency_ms"]["runs"] == 7 for row in results["rows"])


def test_adding_a_format_converts_only_that_format(first):
    folder, cache, _ = first
    results = _build(_recipe(folder, formats="[tflite, onnx]"), folder / "run4", cache)
    assert sorted(results["reused"]["convert"]) == ["tflite-fp32", "tflite-int8"]
    manifest = json.loads((folder / "run4" / "manifest.json").read_text())
    computed = sorted(e["name"] for e in manifest["stages"] if e["stage"] == "convert" and not e["reused"])
    assert computed == ["onnx-fp32", "onnx-int8"]


def test_changing_the_seed_retrains(first):
    folder, cache, _ = first
    results = _build(_recipe(folder, seed=5), folder / "run5", cache)
    assert results["reused"]["train"] == [] and results["reused"]["convert"] == []


def test_fresh_ignores_the_cache(first):
    folder, cache, _ = first
    results = _build(_recipe(folder), folder / "run6", cache, "--fresh")
    assert all(not names for names in results["reused"].values())


def test_cache_info_and_clear(tmp_path):
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(tmp_path / "c")})
    Cache(root=tmp_path / "c").put("train", "k1", "base", lambda d: (d / "model.keras").write_bytes(b"x" * 10))
    info = runner.invoke(cli, ["cache", "info"])
    assert info.exit_code == 0 and "train" in info.output and "1 entries" in info.output
    cleared = runner.invoke(cli, ["cache", "clear"])
    assert "removed 1 entries" in cleared.output
    assert "empty" in runner.invoke(cli, ["cache", "info"]).output


# --------------------------------------------------------------------------- a verified cache


def _key(run: Path, stage: str, name: str) -> str:
    """The key a build used for ``name`` in ``stage`` (from its manifest.json)."""
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    return next(e["key"] for e in stages if e["stage"] == stage and e["name"] == name)


def _rebuild(recipe: Path, out: Path, cache: Path) -> tuple[dict, list[str]]:
    """A build whose output may hold warnings: (results, the [cache] warning lines)."""
    result = CliRunner(env={"EDGEKIT_CACHE_DIR": str(cache)}).invoke(cli, ["build", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("[cache]")]
    return json.loads((out / "results.json").read_text()), warnings


@pytest.fixture
def copied(first, tmp_path):
    """A copy of the first build's cache (so damaging it does not disturb the other tests)."""
    folder, cache, _ = first
    shutil.copytree(cache, tmp_path / "cache")
    return folder, tmp_path / "cache"


def test_a_damaged_artifact_in_the_cache_is_reconverted(first, copied, tmp_path):
    folder, cache = copied
    key = _key(folder / "run1", "convert", "tflite-int8")
    artifact = cache / "convert" / key / "artifact.tflite"
    artifact.write_bytes(artifact.read_bytes()[:100])  # truncated
    results, warnings = _rebuild(_recipe(folder), tmp_path / "run", cache)
    assert warnings == [f"[cache] convert entry {key} for tflite-int8 is corrupt (artifact.tflite: sha256 mismatch); recomputing"]
    assert sorted(results["reused"]["convert"]) == ["tflite-fp32"]
    row = next(r for r in results["rows"] if r["id"] == "tflite-int8@cpu")
    assert row["status"] == "ok" and row["size_bytes"] > 1000
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_path=str(tmp_path / "run" / row["path"])).allocate_tensors()  # a valid flatbuffer, not the truncated file
    assert (cache / "convert" / key / "artifact.tflite").stat().st_size == row["size_bytes"]  # repaired
    _, warnings = _rebuild(_recipe(folder), tmp_path / "run", cache)
    assert warnings == []


def test_swapped_entries_and_a_stray_file_are_not_believed(first, copied, tmp_path):
    """Two convert entries swapped whole (each consistent in itself) used to give the fp32 row the
    int8 artifact's size and the other way round, without a word; a file added to the train entry's
    logs was copied into the run directory. Each entry now says which key it was written for and
    lists every file it holds."""
    folder, cache = copied
    fp32, int8 = (cache / "convert" / _key(folder / "run1", "convert", name) for name in ("tflite-fp32", "tflite-int8"))
    fp32.rename(tmp_path / "aside")
    int8.rename(fp32)
    (tmp_path / "aside").rename(int8)
    train = cache / "train" / _key(folder / "run1", "train", "base")
    (train / "tensorboard" / "train").mkdir(parents=True, exist_ok=True)
    (train / "tensorboard" / "train" / "stray.txt").write_text("not written by edgekit")
    results, warnings = _rebuild(_recipe(folder), tmp_path / "run", cache)
    assert len(warnings) == 3, warnings
    assert f"convert entry {fp32.name} for tflite-fp32 is corrupt (written for the convert entry {int8.name} (tflite-int8)" in warnings[1]
    assert "train entry" in warnings[0] and "tensorboard/train/stray.txt: not listed in entry.json" in warnings[0]
    assert not list((tmp_path / "run").rglob("stray.txt"))
    sizes = {row["id"]: row["size_bytes"] for row in results["rows"]}
    reference = {row["id"]: row["size_bytes"] for row in first[2]["rows"]}
    assert sizes["tflite-int8@cpu"] < sizes["tflite-fp32@cpu"]
    assert abs(sizes["tflite-fp32@cpu"] - reference["tflite-fp32@cpu"]) <= 64  # reconverted, not swapped
    assert json.loads((fp32 / "entry.json").read_text())["holds"] == {"name": "tflite-fp32", "model": "base",
                                                                       "format": "tflite", "precision": "fp32"}


def test_an_edited_measurement_is_remeasured(first, copied, tmp_path):
    folder, cache = copied
    # The cpu rows are timed together and cached as one entry, a file per row (row1: tflite-fp32).
    key = _key(folder / "run1", "bench", "tflite-fp32@cpu")
    path = cache / "bench" / key / "row1.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "latencies_ms": [-5.0] * len(saved["latencies_ms"])}))
    results, warnings = _rebuild(_recipe(folder), tmp_path / "run", cache)
    assert warnings == [f"[cache] bench entry {key} for cpu (3 rows) is corrupt (row1.json: sha256 mismatch); recomputing"]
    assert results["reused"]["bench"] == []  # the whole group is timed again, together
    row = next(r for r in results["rows"] if r["id"] == "tflite-fp32@cpu")
    assert row["status"] == "ok" and row["latency_ms"]["p50"] > 0


def test_a_consistent_but_impossible_measurement_is_remeasured(first, copied, tmp_path):
    """An entry whose checksums match but whose content no benchmark produces is not believed either."""
    folder, cache = copied
    key = _key(folder / "run1", "bench", "keras-fp32@cpu")
    entry = cache / "bench" / key
    saved = json.loads((entry / "row0.json").read_text())
    (entry / "row0.json").write_text(json.dumps({**saved, "latencies_ms": [float("nan")]}))
    (entry / "entry.json").unlink()
    write_manifest(entry, "bench", key)
    results, warnings = _rebuild(_recipe(folder), tmp_path / "run", cache)
    assert len(warnings) == 1 and "unreadable (ValueError: measurement.json holds" in warnings[0]
    assert results["rows"][0]["status"] == "ok" and results["rows"][0]["latency_ms"]["p50"] > 0


def test_a_truncated_evaluation_and_an_entry_without_checksums_are_recomputed(first, copied, tmp_path):
    folder, cache = copied
    eval_key = _key(folder / "run1", "evaluate", "tflite-fp32")
    path = cache / "evaluate" / eval_key / "evaluation.json"
    path.write_text(path.read_text()[:40])
    train_key = _key(folder / "run1", "train", "base")
    (cache / "train" / train_key / "entry.json").unlink()  # as written by an edgekit without checksums
    results, warnings = _rebuild(_recipe(folder), tmp_path / "run", cache)
    assert warnings == [f"[cache] train entry {train_key} for base is corrupt (no entry.json); recomputing",
                        f"[cache] evaluate entry {eval_key} for tflite-fp32 is corrupt (evaluation.json: sha256 mismatch); recomputing"]
    assert results["reused"]["train"] == []
    assert all(row["status"] == "ok" for row in results["rows"])
    assert next(r for r in results["rows"] if r["id"] == "tflite-fp32@cpu")["metrics"]["accuracy"] > 0.5


def test_cache_clear_refuses_a_folder_edgekit_did_not_create(tmp_path):
    shared = tmp_path / "shared"
    (shared / "train" / "k1").mkdir(parents=True)
    (shared / "notes.txt").write_text("mine")
    result = CliRunner(env={"EDGEKIT_CACHE_DIR": str(shared)}).invoke(cli, ["cache", "clear"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and str(shared) in result.output and "EDGEKIT_CACHE_DIR" in result.output
    assert (shared / "notes.txt").exists() and (shared / "train" / "k1").is_dir()
    Cache(root=shared).put("convert", "k2", "x", lambda d: (d / "a").write_text("a"))
    assert not (shared / "CACHEDIR.TAG").exists()  # a folder the user already had is never tagged


def test_cache_clear_removes_only_the_stage_folders(tmp_path):
    root = tmp_path / "cache"
    store = Cache(root=root)
    for stage in ("train", "convert", "bench"):
        store.put(stage, "k", "x", lambda d: (d / "a").write_text("a"))
    (root / "notes.txt").write_text("mine")
    (root / "datasets").mkdir()
    (root / "datasets" / "train.csv").write_text("1,2")
    assert (root / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    result = CliRunner(env={"EDGEKIT_CACHE_DIR": str(root)}).invoke(cli, ["cache", "clear"])
    assert result.exit_code == 0 and "removed 3 entries" in result.output
    assert sorted(p.name for p in root.iterdir()) == ["CACHEDIR.TAG", "datasets", "notes.txt"]
    assert (root / "datasets" / "train.csv").read_text() == "1,2"


def test_a_temporary_folder_of_a_killed_writer_is_swept(tmp_path):
    store = Cache(root=tmp_path / "cache")
    store.put("convert", "k", "x", lambda d: (d / "a").write_text("a"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "cache" / "convert"
    killed = Path(tempfile.mkdtemp(prefix=_temp_prefix("tmp", "k").replace(str(os.getpid()), dead.stdout.strip()), dir=folder))
    live = Path(tempfile.mkdtemp(prefix=_temp_prefix("tmp", "k"), dir=folder))  # this process: still writing
    legacy = Path(tempfile.mkdtemp(prefix=".k.", dir=folder))  # an older edgekit's name, from long ago
    os.utime(legacy, (time.time() - 2 * STALE_S,) * 2)
    store.put("convert", "k2", "y", lambda d: (d / "a").write_text("a"))
    assert not killed.exists() and not legacy.exists() and live.exists()


_STRESS = """
import hashlib, json, os, sys, time
from pathlib import Path
from edgekit.cache import Cache

role, root, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
stop = time.time() + seconds
counts = {"writes": 0, "hits": 0, "misses": 0}
warnings = []
store = Cache(root=root, enabled=role != "fresh-writer", log=warnings.append)

def fill(folder, n):
    payload = os.urandom(1000 + n % 5000)
    (folder / "payload.bin").write_bytes(payload)
    (folder / "meta.json").write_text(json.dumps({"sha": hashlib.sha256(payload).hexdigest(), "writer": role, "n": n}))

def load(folder):
    meta = json.loads((folder / "meta.json").read_text())
    payload = (folder / "payload.bin").read_bytes()
    assert hashlib.sha256(payload).hexdigest() == meta["sha"], "files of two entries mixed"
    return meta

while time.time() < stop:
    if role == "reader":
        value, reused = store.fetch("bench", "k", "x", load=load, compute=lambda: None, store=None, keep=lambda v: False)
        counts["hits" if reused else "misses"] += 1
    else:
        store.put("bench", "k", "x", lambda d, n=counts["writes"]: fill(d, n))
        counts["writes"] += 1
print(json.dumps({**counts, "warnings": warnings}))
"""


def test_two_writers_and_a_reader_of_one_key(tmp_path):
    """One writer replaces the entry each time (--fresh), one keeps a good entry in place, one
    process reads: no error anywhere, and every read is a miss or a complete, verified entry."""
    script = tmp_path / "stress.py"
    script.write_text(_STRESS)
    root = tmp_path / "cache"
    processes = [subprocess.Popen([sys.executable, str(script), role, str(root), "3"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for role in ("fresh-writer", "writer", "reader")]
    outputs = [process.communicate(timeout=60) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0 and stderr == "", stderr
    fresh, keeping, reader = (json.loads(stdout) for stdout, _ in outputs)
    assert fresh["writes"] > 20 and keeping["writes"] > 20 and reader["hits"] > 20
    assert reader["warnings"] == [] and fresh["warnings"] == [] and keeping["warnings"] == []
    assert sorted(p.name for p in (root / "bench").iterdir()) == ["k"]  # no temporary folder left behind
    verify(root / "bench" / "k")


# --------------------------------------------------------------------------- one run per run directory


def test_a_rebuild_removes_the_artifacts_of_the_previous_run(first, copied, tmp_path):
    folder, cache = copied
    run = tmp_path / "run"
    _build(_recipe(folder, formats="[tflite, onnx]"), run, cache)
    assert {p.name for p in (run / "artifacts").iterdir()} >= {"onnx-fp32.onnx", "tflite-int8.tflite"}
    results = _build(_recipe(folder), run, cache)
    contracts = {p.name for p in (run / "artifacts").iterdir() if p.name.endswith(".contract.json")}
    assert contracts == {f"{row['id']}.contract.json" for row in results["rows"]}  # this run's rows only
    files = {p.name for p in (run / "artifacts").iterdir()} - contracts
    assert files == {"tflite-fp32.tflite", "tflite-int8.tflite"}
    manifest = json.loads((run / "manifest.json").read_text())
    described = {Path(f).name for a in manifest["artifacts"] for f in a["files"] if Path(f).parent.name == "artifacts"}
    assert files == described == {Path(r["path"]).name for r in results["rows"][1:]}


def test_a_folder_that_is_not_a_run_directory_is_refused_unless_forced(first, tmp_path):
    folder, cache, _ = first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(cache)})
    refused = runner.invoke(cli, ["build", str(_recipe(folder)), "--out", str(tmp_path / "mine")])
    assert refused.exit_code == 2 and "--force" in refused.output and str(tmp_path / "mine") in refused.output
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["thesis.tex"]
    forced = runner.invoke(cli, ["build", str(_recipe(folder)), "--out", str(tmp_path / "mine"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep" and (tmp_path / "mine" / "results.json").exists()


@pytest.mark.slow
def test_deleting_the_run_directory_during_the_build_fails_it(tmp_path):
    recipe = tmp_path / "slow.yaml"
    recipe.write_text(_recipe(tmp_path).read_text().replace("inputs: 2,", "inputs: 2, min_time_s: 1,"))
    assert "min_time_s: 1," in recipe.read_text()  # the bench lasts past the marker below
    process = _start(recipe, tmp_path / "run", tmp_path / "cache")
    _wait_for(process, "[bench] cpu:")
    shutil.rmtree(tmp_path / "run")
    output = process.communicate()[0]
    assert process.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "lost files during the build" in errors[0] and "Traceback" not in output
    assert not (tmp_path / "run" / "results.json").exists()


def _start(recipe: Path, out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _wait_for(process: subprocess.Popen, marker: str) -> None:
    for line in process.stdout:
        if marker in line:
            return
    pytest.fail(f"the build ended before printing {marker!r}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted build of the kill tests' recipe, with its own cache."""
    folder = tmp_path_factory.mktemp("reference")
    return _build(_recipe(folder, epochs=40, runs=400), folder / "run", folder / "cache")


def _descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid`` (Linux /proc), each with its start time: a pid the
    kernel hands out again later is another process."""
    parents, started = {}, {}
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and fields[0] != "Z":  # a zombie has exited: only its entry is left
            parents[int(entry.name)], started[int(entry.name)] = int(fields[1]), fields[19]
    found, frontier = {}, [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier and child not in found]
        found.update((child, started[child]) for child in below)
        frontier = below
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    alive = []
    for pid, started in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and fields[19] == started:
            alive.append(pid)
    return alive


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["epoch 3/", "[convert] tflite-int8"])
def test_a_build_killed_with_sigkill_resumes_to_the_same_table(tmp_path, reference, marker):
    """SIGKILL while training and while converting (a worker busy, a probe running ahead): no
    process of the build outlives it by 2 s (edgekit.lifeline; a probe lived on for its whole
    run before), and the rebuild gives the same table, redoing only what was not finished."""
    recipe, cache = _recipe(tmp_path, epochs=40, runs=400), tmp_path / "cache"
    process = _start(recipe, tmp_path / "run", cache)
    _wait_for(process, marker)
    children = _descendants(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    # 2 s, not the 5: a probe left behind often finishes on its own within 5 s (it did
    # here: alive at 2 s, gone at 10), while SIGKILL from the kernel takes milliseconds
    deadline = time.monotonic() + 2
    while _alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(children), f"processes of the killed build still alive after 2 s: {_alive(children)}"
    results = _build(recipe, tmp_path / "run", cache)
    assert _table(results) == _table(reference) and _same_sizes(results, reference)
    if marker.startswith("[convert]"):  # training and the fp32 conversion had finished: not redone
        assert children, "a build converting has a worker process: none was found"
        assert results["reused"]["train"] == ["base"]
        assert "tflite-fp32" in results["reused"]["convert"]
    else:  # killed mid-training: nothing was cached, so it trains again
        assert results["reused"]["train"] == []


@pytest.mark.slow
def test_ctrl_c_writes_partial_results_and_exits_130(tmp_path):
    recipe = _recipe(tmp_path, epochs=40, runs=3000)
    process = _start(recipe, tmp_path / "run", tmp_path / "cache")
    _wait_for(process, "[bench] cpu:")
    process.send_signal(signal.SIGINT)
    output = process.communicate()[0]
    assert process.returncode == 130, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "interrupted: partial results in" in errors[0]
    assert "Traceback" not in output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["interrupted"] is True
    rows = {row["id"]: row for row in results["rows"]}
    # The cpu rows are timed together, in interleaved rounds: stopped mid-way, none has a
    # latency, and every one keeps the metrics its evaluation had measured.
    assert {row["status"] for row in rows.values()} == {"interrupted"}
    assert rows["keras-fp32@cpu"]["metrics"]["accuracy"] > 0.5 and rows["tflite-int8@cpu"]["metrics"]["accuracy"] > 0.5


def test_a_cache_that_cannot_be_written_costs_only_the_reuse(tmp_path):
    """A full or read-only cache disk: the computed value is returned, one warning, no exception."""
    from edgekit.cache import Cache

    lines = []
    store = Cache(root=tmp_path / "cache", log=lines.append)

    def store_fails(value, folder):
        raise OSError(28, "No space left on device")

    value, reused = store.fetch("convert", "k" * 32, "tflite-int8", load=lambda f: None, compute=lambda: 42, store=store_fails)
    assert (value, reused) == (42, False)
    assert len(lines) == 1 and "could not store the convert entry for tflite-int8" in lines[0]
    assert not list((tmp_path / "cache" / "convert").glob("*"))  # no half entry, no temp folder left


def test_an_error_outside_the_entry_does_not_discard_it(tmp_path):
    """A load that fails writing elsewhere (the run directory) keeps the good entry."""
    from edgekit.cache import Cache

    store = Cache(root=tmp_path / "cache", log=lambda line: None)
    store.fetch("train", "t" * 32, "base", load=lambda f: None, compute=lambda: "x",
                store=lambda v, folder: (folder / "model.txt").write_text(v))

    def load_into_missing_folder(folder):
        (tmp_path / "no" / "such" / "dir" / "model.txt").write_text((folder / "model.txt").read_text())

    with pytest.raises(FileNotFoundError):
        store.fetch("train", "t" * 32, "base", load=load_into_missing_folder, compute=lambda: "y", store=lambda v, f: None)
    assert (store.entry("train", "t" * 32) / "model.txt").read_text() == "x"
