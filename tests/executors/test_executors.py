"""Where tasks run: the local pool and Dask (a 2-worker LocalCluster with worker processes, and a
scheduler and worker started by hand), the host and device locks that keep timings honest, the
faults (a killed worker, a lost scheduler) and builds of several recipes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.errors import WorkerDied
from edgekit.executors.local import LocalPool
from edgekit.locks import Hold, overlaps
from tests.conftest import TINY_CHECK, TINY_RECIPE, TINY_UNPROFILED, output_until
from tests.targets.sshd import device_profile, ssh_server  # noqa: F401 - registers the fixture

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    """Locks of the test's own (set before any worker starts: workers inherit it)."""
    folder = tmp_path / "locks"
    monkeypatch.setenv("EDGEKIT_LOCK_DIR", str(folder))
    return folder


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _sleep_marked(marker: str, seconds: float) -> int:
    """Say (a file) that the task runs, inside its hold, then sleep."""
    Path(marker).touch()
    return _sleep(seconds)


def _kill_self(marker: str | None) -> int:
    """SIGKILL the worker running this, the first time only when ``marker`` is a path."""
    if marker is None or not Path(marker).exists():
        if marker is not None:
            Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


# --------------------------------------------------------------------------- the locks


def test_a_benchmark_on_the_host_never_overlaps_other_work_there(lock_dir):
    """Shared work in two worker processes, a benchmark held exclusive in this process meanwhile:
    whatever the scheduling, no interval of the benchmark meets another."""
    with LocalPool(2) as pool:
        markers = [lock_dir.parent / f"running-{i}" for i in range(3)]
        first = [pool.submit(_sleep_marked, str(m), 0.4, hold=Hold(f"convert {i}", "convert")) for i, m in enumerate(markers)]
        deadline = time.monotonic() + 60
        while not (markers[0].exists() and markers[1].exists()) and time.monotonic() < deadline:
            time.sleep(0.02)  # both workers hold the host shared now
        with pool.hold(Hold("bench cpu", "bench", mode="exclusive")):
            time.sleep(0.3)
        later = [pool.submit(_sleep, 0.2, hold=Hold(f"convert {i}", "convert")) for i in range(3, 5)]
        pids = {f.result(timeout=60) for f in first + later}
    records = pool.records
    assert len(records) == 6 and len(pids) == 2
    assert overlaps(records) == []
    bench = next(r for r in records if r["mode"] == "exclusive")
    assert bench["end"] - bench["start"] >= 0.3 and bench["waited_s"] > 0  # it waited for the first tasks
    # The check itself sees an overlap when there is one.
    assert overlaps([{**bench}, {**records[0], "start": bench["start"], "end": bench["end"]}])


def test_one_device_runs_one_task_at_a_time_different_devices_at_once(lock_dir, cluster):
    futures = [cluster.submit(_sleep, 0.4, hold=Hold(f"bench {name} {i}", "bench", device=name))
               for i in range(2) for name in ("pi", "jetson")]
    for future in futures:
        future.result(timeout=60)
    records = [r for r in cluster.records if r["task"].startswith("bench ") and r["device"] in ("pi", "jetson")][-4:]
    assert {r["holder"] for r in records} <= set(cluster.client.scheduler_info()["workers"])
    assert overlaps(records) == []
    for device in ("pi", "jetson"):
        assert len([r for r in records if r["device"] == device]) == 2


# --------------------------------------------------------------------------- faults


def test_executor_without_dask_is_one_line_and_exit_2(tmp_path, monkeypatch):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    for name in ("distributed", "dask", "edgekit.executors.dask_cluster"):  # as if Dask were not installed
        monkeypatch.setitem(sys.modules, name, None)
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run"),
                                      "--executor", "dask://127.0.0.1:8786"])
    assert result.exit_code == 2
    assert "pip install 'keras-edgekit[dask]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "results.json").exists()
    wrong = CliRunner().invoke(cli, ["build", str(recipe), "--executor", "ray://x"])
    assert wrong.exit_code == 2 and "dask://HOST:PORT" in wrong.output


def test_an_address_no_scheduler_can_answer_at_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    """A host name that does not resolve (at once: Dask's own connect would try it for 10 s and
    only say it timed out) and a port that refuses (tried again until the connect timeout, as Dask
    does: a scheduler started just before may not listen yet; 0.5 s here): exit 2 with the reason,
    before the run directory or the search's folder is made."""
    from edgekit.executors import dask_cluster
    from tests.targets.sshd import free_port

    monkeypatch.setattr(dask_cluster, "CONNECT_S", 0.5)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    for address, reason in ((f"127.0.0.1:{free_port()}", "Connection refused for 0.5 s"),
                            ("no-such-host.invalid:8786", "the host name 'no-such-host.invalid' does not resolve")):
        for command in (["build", str(recipe), "--out", str(tmp_path / "runs" / "tiny")],
                        ["search", str(recipe), "--out", str(tmp_path / "runs" / "search")]):
            result = CliRunner().invoke(cli, [*command, "--executor", f"dask://{address}"])
            assert result.exit_code == 2, result.output
            assert result.output.startswith(f"Error: --executor dask://{address}: no Dask scheduler answered (")
            assert reason in result.output and result.output.count("\n") == 1, result.output
            assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_scheduler_going_away_is_one_line_exit_1_and_partial_results(tmp_path):
    """A scheduler and a worker started as a user would; the scheduler is killed while the worker
    converts (the test-only `slow` format sleeps in its converter)."""
    from tests.targets.sshd import free_port

    port, bin_dir = free_port(), Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEKIT_CACHE_DIR": str(tmp_path / "cache")}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": REPO}
    scheduler = subprocess.Popen([bin_dir / "dask", "scheduler", "--port", str(port), "--no-dashboard"], **quiet)
    worker = subprocess.Popen([bin_dir / "dask", "worker", f"127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard",
                               "--no-nanny"], **quiet)
    try:
        recipe = tmp_path / "slow.yaml"
        recipe.write_text(TINY_UNPROFILED + "export:\n  formats: [tflite, slow]\n")
        run_dir = tmp_path / "run"
        build = subprocess.Popen([sys.executable, "-m", "tests.evaluate.crashing_format", "build", str(recipe), "--out",
                                  str(run_dir), "--executor", f"dask://127.0.0.1:{port}"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
        lines = output_until(build, "[convert] slow-fp32")
        scheduler.kill()
        rest, _ = build.communicate(timeout=90)
    finally:
        for process in (scheduler, worker):
            process.kill()
            process.wait(timeout=30)
    output = "".join(lines) + rest
    assert build.returncode == 1, output
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    assert "scheduler" in last and "went away" in last and "partial results" in last, last
    results = json.loads((run_dir / "results.json").read_text())
    status = {row["id"]: row["status"] for row in results["rows"]}
    assert status["slow-fp32@cpu"] == "interrupted" and status["keras-fp32@cpu"] in ("ok", "interrupted")
    assert any(t["kind"] == "build" for t in results["tasks"])


# --------------------------------------------------------------------------- builds


def test_a_build_on_a_two_worker_cluster_gives_the_local_answers(tiny_run, tmp_path, cluster, monkeypatch):
    """The shared tiny build (local pool) against the same recipe on the cluster, from an empty
    cache: same rows, statuses, metrics and parity; the conversions ran on the cluster's workers
    and no benchmark overlapped them."""
    from edgekit.cache import Cache
    from edgekit.pipeline import build as pipeline
    from edgekit.recipe.schema import load_recipe

    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    recipe_file = tmp_path / "tiny.yaml"  # tiny_run's recipe, less the profiles this test never reads
    recipe_file.write_text(tiny_run.recipe.read_text().replace("  inputs: 4\n", "  inputs: 4\n  profile: false\n"))
    recipe = load_recipe(recipe_file)
    assert recipe.benchmark.profile is False
    lines: list[str] = []
    result = pipeline.build(recipe, tmp_path / "run", log=lines.append, cache=Cache(root=tmp_path / "cache"),
                            executor=cluster)
    local, dask = tiny_run.results["rows"], result.results["rows"]
    assert [r["id"] for r in dask] == [r["id"] for r in local]
    for ours, theirs in zip(dask, local):
        assert ours["status"] == theirs["status"], ours["id"]
        assert ours["metrics"] == pytest.approx(theirs["metrics"], rel=1e-6), ours["id"]
        assert ours["parity"] == pytest.approx(theirs["parity"], rel=1e-5, abs=1e-7), ours["id"]
    tasks = result.results["tasks"]
    converts = [t for t in tasks if t["kind"] == "convert"]
    assert len(converts) == len(local) - 1, tasks
    # On the cluster's workers (how many of the two got work is the scheduler's call: under load
    # one may take them all).
    assert all(t["holder"] in cluster.client.scheduler_info()["workers"] or t["holder"].startswith("tcp://")
               for t in converts), converts
    assert any(t["kind"] == "bench" and t["mode"] == "exclusive" for t in tasks)
    assert overlaps(tasks) == []
    # Training and the Keras baseline ran as one task on a worker (edgekit.pipeline.whole_build), not here.
    prepares = [t for t in tasks if t["kind"] == "prepare"]
    assert len(prepares) == 1 and prepares[0]["holder"] != f"pid {os.getpid()}", tasks
    assert result.results["reused"]["train"] and "prepare" in result.results["stages"]
    shutil.copytree(tmp_path / "cache", tmp_path.parent / "cluster-cache", dirs_exist_ok=True)


def test_several_recipes_prepare_on_the_workers_at_once_and_time_here(tmp_path, cluster, monkeypatch):
    """`edgekit build` of two recipes on the cluster: both preparations (training, conversions) are
    sent at once, each is a task on a worker, and each recipe's rows are timed here."""
    from edgekit.pipeline import many
    from edgekit.recipe.schema import load_recipe

    if (tmp_path.parent / "cluster-cache").is_dir():  # the build above trained the same model
        shutil.copytree(tmp_path.parent / "cluster-cache", tmp_path / "cache")
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    recipes = []
    for name in ("first", "second"):
        (tmp_path / f"{name}.yaml").write_text(TINY_UNPROFILED.replace("name: tiny", f"name: {name}")
                                               .replace("runs: 20", f"runs: {20 + len(recipes)}")  # each times its rows
                                               + "export:\n  formats: [tflite]\n")
        recipes.append(load_recipe(tmp_path / f"{name}.yaml"))
    summary = many.build_all(recipes, tmp_path / "runs", executor=cluster, tensorboard=False, say=lambda line: None)
    assert summary["exit_code"] == 0 and [r["status"] for r in summary["recipes"]] == ["ok", "ok"]
    tasks = []
    for name in ("first", "second"):
        results = json.loads((tmp_path / "runs" / name / "results.json").read_text())
        assert {r["id"] for r in results["rows"]} == {"keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu"}
        mine = [t for t in results["tasks"] if t["task"] == f"prepare {name}"]
        assert len(mine) == 1 and mine[0]["holder"] != f"pid {os.getpid()}"
        assert [t["holder"] for t in results["tasks"] if t["kind"] == "bench"] == [f"pid {os.getpid()}"]
        assert "[data] digits" in (tmp_path / "runs" / name / "prepare.log").read_text()
        tasks += results["tasks"]
    assert overlaps(tasks) == []


def test_a_search_spreads_its_trials_over_the_workers_and_times_them_here(tmp_path, cluster, monkeypatch):
    """Two trials on the cluster: each one's preparation (training, conversions) is a task on a
    worker; every timing is in this process, holding the machine alone."""
    from edgekit.search import run_search

    if (tmp_path.parent / "cluster-cache").is_dir():  # the build above trained the same model
        shutil.copytree(tmp_path.parent / "cluster-cache", tmp_path / "cache")
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "cache"))
    recipe = tmp_path / "search.yaml"
    recipe.write_text(TINY_UNPROFILED + "search:\n  space: {format: [tflite], precision: [fp32, int8]}\n"
                      "  constraints: {max_metric_drop: 0.1}\n")
    doc = run_search(recipe, tmp_path / "out", executor=cluster, say=lambda line: None)
    trials = doc["search"]["trials"]
    assert [t["status"] for t in trials] == ["ok", "ok"] and doc["search"]["pick"] is not None
    tasks = []
    for trial in trials:
        assert trial["prepared"]["pid"] != os.getpid()
        tasks += json.loads((tmp_path / "out" / trial["run_dir"] / "results.json").read_text())["tasks"]
    assert sorted(t["task"] for t in tasks if t["kind"] == "prepare") == sorted(f"prepare tiny-{t['id']}" for t in trials)
    assert all(t["holder"] != f"pid {os.getpid()}" for t in tasks if t["kind"] in ("prepare", "convert"))
    assert [t["holder"] for t in tasks if t["kind"] == "bench"] == [f"pid {os.getpid()}"] * 2
    assert overlaps(tasks) == []


def test_devices_are_benchmarked_on_the_cluster_one_task_each(ssh_server, tiny_run, tmp_path, cluster):  # noqa: F811
    """Two device profiles (the same test sshd): each device's rows are one task on a Dask
    worker, holding that device; the rows carry the device's own metrics."""
    from edgekit.cache import Cache
    from edgekit.pipeline import build as pipeline
    from edgekit.recipe.schema import load_recipe

    for name in ("dev-a", "dev-b"):
        device_profile(tmp_path, name, ssh_server)
    recipe_file = tmp_path / "tiny.yaml"
    # retime_unstable: 0, as an unstable row (microseconds on a shared sshd) would be timed again
    # in another task on its device, which this test does not count
    recipe_file.write_text(TINY_UNPROFILED + "  retime_unstable: 0\ntargets: [cpu, dev-a, dev-b]\nexport:\n"
                           "  formats: [tflite]\n")
    result = pipeline.build(load_recipe(recipe_file), tmp_path / "run", log=lambda line: None,
                            cache=Cache(root=tmp_path / "cache"), executor=cluster)
    rows = {r["id"]: r for r in result.results["rows"]}
    for name in ("dev-a", "dev-b"):
        row = rows[f"tflite-int8@{name}"]
        assert row["status"] == "ok", row["reason"]
        assert row["metrics"]["accuracy"] > 0.8 and row["latency_ms"]["p50"] > 0
    assert result.results["targets"]["dev-a"]["device"] == "dev-a"
    tasks = result.results["tasks"]
    devices = [t for t in tasks if t.get("device")]
    assert sorted(t["device"] for t in devices) == ["dev-a", "dev-b"]
    assert all(t["holder"].startswith("tcp://") for t in devices)
    assert overlaps(tasks) == []


def test_many_recipes_one_summary_and_one_exit_code(tiny_run, tmp_path):
    """A folder of two recipes sharing the tiny build's work (its cache, copied): one run
    directory each, one summary; a broken recipe among them stops everything before a build."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_run.recipe.parent / "cache", cache)
    folder = tmp_path / "recipes"
    folder.mkdir()
    for name in ("first", "second"):
        (folder / f"{name}.yaml").write_text((TINY_RECIPE + TINY_CHECK).replace("name: tiny", f"name: {name}"))
    runner = CliRunner(env={"EDGEKIT_CACHE_DIR": str(cache)})
    result = runner.invoke(cli, ["build", str(folder), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert [r["name"] for r in summary["recipes"]] == ["first", "second"] and summary["exit_code"] == 0
    for recipe in summary["recipes"]:
        assert recipe["status"] == "ok" and set(recipe["best"]) == {"keras", "tflite", "onnx", "openvino"}
        results = json.loads((Path(recipe["run_dir"]) / "results.json").read_text())
        assert results["recipe"]["name"] == recipe["name"] and results["reused"]["train"]  # training-free
    assert "first" in result.output and "second" in result.output
    (folder / "third.yaml").write_text(TINY_RECIPE.replace("epochs: 8", "epochs: -1"))
    broken = runner.invoke(cli, ["build", str(folder), "--out", str(tmp_path / "again")])
    assert broken.exit_code == 2 and "third.yaml" in broken.output and "epochs" in broken.output
    assert not (tmp_path / "again").exists()


@pytest.mark.slow
def test_two_builds_at_once_share_one_cache_and_never_time_over_each_other(tmp_path):
    """Two `edgekit build` processes of one recipe, started together on one empty cache: both
    write the same entries (one wins each key, complete), both get the same answers, and neither
    build's benchmark overlaps any task of the other."""
    from edgekit.cache import verify

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_UNPROFILED + "export:\n  formats: [tflite, onnx]\n")
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(tmp_path / "cache")}
    builds = [subprocess.Popen([sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(tmp_path / name)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
              for name in ("a", "b")]
    outputs = [build.communicate(timeout=300)[0] for build in builds]
    for build, output in zip(builds, outputs):
        assert build.returncode == 0, output
    a, b = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("a", "b"))
    assert [(r["id"], r["status"], r["metrics"]) for r in a["rows"]] == [(r["id"], r["status"], r["metrics"]) for r in b["rows"]]
    entries = [entry for stage in (tmp_path / "cache").iterdir() if stage.is_dir() and stage.name != "scratch"
               for entry in stage.iterdir()]
    assert entries and not [e for e in entries if e.name.startswith(".")]  # no writer's temporary folder left
    for entry in entries:
        verify(entry)  # every entry complete: its files match its checksums
    assert overlaps(a["tasks"] + b["tasks"]) == []
    assert any(t["mode"] == "exclusive" for t in a["tasks"]) and any(t["mode"] == "exclusive" for t in b["tasks"])


# Last of the cluster's tests: the workers it kills are restarted by their nannies, in their own time.
def test_a_killed_worker_gets_its_task_retried_once_then_failed_naming_the_worker(tmp_path, cluster):
    retried = cluster.submit(_kill_self, str(tmp_path / "killed-once"), hold=Hold("once", "convert"))
    assert retried.result(timeout=120) > 0  # the second try ran on another worker
    always = cluster.submit(_kill_self, None, hold=Hold("always", "convert"))
    with pytest.raises(WorkerDied) as died:
        always.result(timeout=120)
    assert died.value.tries == 2 and died.value.worker.startswith("tcp://127.0.0.1:")
    assert died.value.worker in died.value.how() and "2 times" in died.value.how()
