"""Pools of ssh devices and their faults, for real: the test sshd on 127.0.0.1 plays every member
(each its own work_dir, some with a port where no sshd listens, a session the test kills
mid-job, or a device Python that hangs), timed with `edgekit bench` on the tiny model's TFLite
files. Small timeouts and backoffs keep each fault to a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgekit import api
from edgekit.cli import cli
from edgekit.errors import DeviceError
from edgekit.targets import profiles, ssh_transport
from tests.targets.sshd import free_port
from tests.targets.sysfs import fake_sysfs
from tests.targets.test_ssh import _processes_with, _slow_python

pytestmark = pytest.mark.device

#: what each fault test's pool shares: short timeouts, a quick backoff, one fault quarantines
FAST = {"connect_timeout_s": 3, "timeout_s": 20, "retries": 1, "backoff_s": 0.2, "quarantine_after": 1}


def pool_profile(folder: Path, name: str, server, members: list[dict], **fields) -> Path:
    """devices/NAME.yaml: a pool of ``members`` (each {name, ...}) on the test sshd."""
    doc = {"hosts": [{"host": "127.0.0.1", "port": server.port, "work_dir": str(folder / "work" / m["name"]), **m}
                     for m in members],
           "user": server.user, "identity_file": str(server.user_key), "known_hosts": str(server.known_hosts),
           "python": server.python, "runtimes": ["tflite_runtime"], **FAST, **fields}
    (folder / "devices").mkdir(parents=True, exist_ok=True)
    path = folder / "devices" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def bench(folder: Path, files: list[Path], target: str):
    """`edgekit bench` of ``files`` on ``target``: its results and log lines."""
    lines: list[str] = []
    result = api.bench(files, [target], runs=6, warmup=1, profile=False, devices=folder / "devices", log=lines.append)
    return result.results, lines


def _stat(pid: int) -> tuple[str, int]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.index("(") + 1:text.rindex(")")], int(text.rsplit(")", 1)[1].split()[1])


class DropOnce(threading.Thread):
    """Kills, once, the sshd session that serves a runner under ``fragment``: the device drops
    the connection mid-job (as a board whose network goes away does)."""

    def __init__(self, fragment: str):
        super().__init__(daemon=True)
        self.fragment, self.dropped, self.stop = fragment, [], threading.Event()

    def run(self):
        while not self.stop.is_set() and not self.dropped:
            for pid in _processes_with(self.fragment):
                time.sleep(0.3)  # inside its run
                parent = pid
                while parent > 1:
                    try:
                        comm, up = _stat(parent)
                    except (OSError, ValueError):
                        break
                    if comm == "sshd":
                        try:
                            os.kill(parent, signal.SIGKILL)
                            self.dropped.append(parent)
                        except ProcessLookupError:  # the job ended first: wait for the next one
                            pass
                        break
                    parent = up
                break
            time.sleep(0.05)


def _rows(results: dict) -> dict:
    return {row["id"]: row for row in results["rows"]}


def test_a_pool_spreads_its_jobs_over_its_free_members_and_records_each_device(ssh_server, tiny_artifacts, tmp_path):
    """Two files are two jobs; two free members take one each, at once; each row names its device.
    The device side reads its (fake) /sys around every round and waits below the profile's limit."""
    fake = fake_sysfs(tmp_path / "sys", freq_khz=[1800000, 1800000], governor="performance", temps_mc=[41000])
    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "pi-a"}, {"name": "pi-b"}], sysfs_root=str(fake),
                 wait_below_c=60)
    files = [tiny_artifacts["tflite", "fp32"], tiny_artifacts["tflite", "int8"]]
    results, _ = bench(tmp_path, files, "shelf")
    rows = _rows(results)
    assert [row["status"] for row in rows.values()] == ["ok", "ok"], [row["reason"] for row in rows.values()]
    assert {row["device"] for row in rows.values()} == {"pi-a", "pi-b"}
    assert all(row["target"] == "shelf" and row["runtime"] == "tflite_runtime 2.14.0" for row in rows.values())
    for row in rows.values():
        clocks = row["timing"]["clocks"]
        assert clocks["source"] == str(fake) and clocks["governors"] == ["performance"]
        assert clocks["temp_c"] == [41.0, 41.0] and len(clocks["readings"]) == 2 * row["timing"]["rounds"]
        assert [w["reached"] for w in clocks["waits"]] == [True] * row["timing"]["rounds"]
        assert not any("governor" in note for note in row["notes"])
    members = results["targets"]["shelf"]["members"]
    assert set(members) == {"pi-a", "pi-b"} and results["targets"]["shelf"]["fleet"]["members"]["pi-a"]["jobs"] == 1


def test_a_member_whose_sshd_is_stopped_is_retried_then_quarantined_and_its_job_moves(ssh_server, tiny_artifacts, tmp_path):
    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "dead", "port": free_port()}, {"name": "alive"}])
    results, lines = bench(tmp_path, [tiny_artifacts["tflite", "int8"]], "shelf")
    (row,) = results["rows"]
    assert row["status"] == "ok" and row["device"] == "alive", row["reason"]
    # the health check's probe of the dead member was tried twice (retries: 1), then the job moved
    assert [r["device"] for r in row["retries"]] == ["dead", "dead"]
    assert all("connection refused" in r["error"] for r in row["retries"]) and row["retries"][0]["backoff_s"] == 0.2
    fleet = results["targets"]["shelf"]["fleet"]["members"]
    assert fleet["dead"]["status"] == "quarantined" and "health check failed" in fleet["dead"]["reason"]
    assert fleet["alive"] == {"status": "ok", "reason": None, "jobs": 1, "health": "ok"}
    assert any("try 2 of 2 in 0.2 s" in line for line in lines)


def test_a_member_that_drops_the_connection_mid_job_is_retried_on_the_same_device(ssh_server, tiny_artifacts, tmp_path):
    # its runner worker takes 2 s to start: the drop lands inside the job, whatever the machine's load
    lagging = _slow_python(tmp_path, ssh_server.python, seconds=2)
    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "flaky", "python": str(lagging)}, {"name": "spare"}])
    dropper = DropOnce(str(tmp_path / "work" / "flaky"))
    dropper.start()
    try:
        results, _ = bench(tmp_path, [tiny_artifacts["tflite", "int8"]], "shelf")
    finally:
        dropper.stop.set()
        dropper.join()
    (row,) = results["rows"]
    assert len(dropper.dropped) == 1
    assert row["status"] == "ok" and row["device"] == "flaky", row["reason"]
    (retry,) = row["retries"]
    assert retry["device"] == "flaky" and "closed" in retry["error"], retry
    assert results["targets"]["shelf"]["fleet"]["members"]["flaky"]["status"] == "ok"
    assert list((tmp_path / "work" / "flaky").iterdir()) == []  # both tries' folders removed


def test_a_member_that_answers_too_slowly_times_out_is_quarantined_and_never_hangs_the_build(
        ssh_server, tiny_artifacts, tmp_path):
    slow = _slow_python(tmp_path, ssh_server.python)  # its runner worker sleeps 120 s
    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "slow", "python": str(slow), "timeout_s": 2.5}, {"name": "quick"}])
    started = time.monotonic()
    results, _ = bench(tmp_path, [tiny_artifacts["tflite", "int8"]], "shelf")
    took = time.monotonic() - started
    (row,) = results["rows"]
    assert row["status"] == "ok" and row["device"] == "quick", row["reason"]
    assert [r["device"] for r in row["retries"]] == ["slow", "slow"]
    assert all("took longer than 2.5 s and was stopped" in r["error"] for r in row["retries"])
    assert results["targets"]["shelf"]["fleet"]["members"]["slow"]["status"] == "quarantined"
    assert took < 60, took  # two timed-out tries and the move, not the sleeping runner's 120 s
    deadline = time.monotonic() + 10  # the runner exits when ssh goes: nothing left on the device
    while _processes_with(str(tmp_path / "work" / "slow")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(str(tmp_path / "work" / "slow")) == []


def test_with_no_member_left_the_rows_are_skipped_naming_each_device_and_its_error(ssh_server, tiny_artifacts, tmp_path):
    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "gone1", "port": free_port()},
                                                 {"name": "gone2", "port": free_port()}], retries=0)
    results, _ = bench(tmp_path, [tiny_artifacts["tflite", "int8"]], "shelf")
    (row,) = results["rows"]
    assert row["status"] == "skipped" and row["reason"].startswith("pool shelf: no device left to time it (")
    for device in ("gone1", "gone2"):
        assert f"{device}: health check failed: device unreachable: connection refused" in row["reason"]
    assert "\n" not in row["reason"]


def test_profiles_that_share_a_pool_name_are_one_target(ssh_server, tiny_artifacts, tmp_path, write_recipe):
    from tests.targets.sshd import device_profile

    for name in ("board1", "board2"):
        device_profile(tmp_path, name, ssh_server, pool="bench-shelf", **FAST)
    results, _ = bench(tmp_path, [tiny_artifacts["tflite", "fp32"], tiny_artifacts["tflite", "int8"]], "bench-shelf")
    assert {row["device"] for row in results["rows"]} == {"board1", "board2"}
    assert all(row["id"].endswith("@bench-shelf") and row["status"] == "ok" for row in results["rows"])
    # a recipe may name the pool; its members stay targets of their own
    from edgekit.recipe.schema import load_recipe

    recipe = write_recipe("name: m\nmodel: {arch: mlp}\ntargets: [cpu, bench-shelf, board1]\n")  # beside devices/
    assert load_recipe(recipe).targets == ["cpu", "bench-shelf", "board1"]


def test_devices_check_of_a_pool_checks_every_member(ssh_server, tmp_path):
    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "up"}, {"name": "down", "port": free_port()}])
    result = CliRunner().invoke(cli, ["devices", "check", "shelf", "--devices", str(tmp_path / "devices")])
    assert result.exit_code == 1, result.output
    assert "pool shelf: 2 device(s): up, down" in result.output and "device up: ready" in result.output
    assert "MB free" in result.output  # the work_dir's free disk, part of the health check
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and error[0].startswith(
        "Error: pool shelf: 1 of 2 device(s) not ready: down: device unreachable: connection refused"), result.output
    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "up"}, {"name": "full"}], min_free_mb=1e12)
    full = CliRunner().invoke(cli, ["devices", "check", "shelf", "--devices", str(tmp_path / "devices")])
    assert full.exit_code == 1 and "less than min_free_mb 1e+12" in full.output


def test_pool_profiles_are_checked_in_one_line(tmp_path):
    from edgekit.errors import DeviceProfileError

    (tmp_path / "devices").mkdir()
    cases = {
        "both": ({"host": "a", "hosts": ["b"]}, "host: give either host (one device) or hosts"),
        "twice": ({"hosts": ["a", "a"]}, "hosts: two members are called 'a:22'"),
        "nested": ({"hosts": ["a"], "pool": "p"}, "pool: a profile with hosts: is a pool itself"),
    }
    for name, (fields, fragment) in cases.items():
        path = tmp_path / "devices" / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"runtimes": ["tflite_runtime"], **fields}))
        with pytest.raises(DeviceProfileError) as info:
            profiles.load_profile(path)
        assert fragment in info.value.message and "\n" not in info.value.message, info.value.message


def test_an_upload_to_a_device_that_stops_reading_ends_at_the_timeout():
    """16 MB on stdin to a program that never reads it: the pipe fills, and before the writer
    thread the build would wait there for ever; now the timeout ends it (transient: retried)."""
    from types import SimpleNamespace

    profile = SimpleNamespace(identity_file=None, timeout_s=1.5, path=None, describe=lambda: "local", name="local")
    started = time.monotonic()
    with pytest.raises(DeviceError) as info:
        ssh_transport.LocalConnection(profile).run([sys.executable, "-c", "import time; time.sleep(60)"],
                                                   stdin=b"x" * 16_000_000)
    assert time.monotonic() - started < 10
    assert info.value.transient and "took longer than 1.5 s and was stopped" in str(info.value)


def test_the_pool_runs_on_dask_with_the_clusters_device_locks(ssh_server, tiny_artifacts, tmp_path):
    """The same jobs as Dask tasks: the member is chosen with the cluster's locks
    (distributed.Lock, tried without blocking), a dead member is still quarantined."""
    from distributed import LocalCluster

    from edgekit.bench import fleet
    from edgekit.bench.files import BenchSpec
    from edgekit.executors.dask_cluster import DaskExecutor
    from edgekit.targets import resolve
    from edgekit.targets.ssh import SshTarget  # noqa: F401 - the tasks unpickle it on the workers

    pool_profile(tmp_path, "shelf", ssh_server, [{"name": "dead", "port": free_port()}, {"name": "alive"}], retries=0)
    target = resolve(["shelf"], [tmp_path / "devices"])["shelf"]
    import numpy as np

    from edgekit.bench.files import format_of, precision_of
    from edgekit.variant import Variant

    path = tiny_artifacts["tflite", "int8"]
    fmt = format_of(path)
    variant = Variant(format=fmt.name, precision=precision_of(fmt, path), model=path.stem, path=path)
    samples = [np.zeros((8, 8, 1), np.float32)] * 2
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        executor = DaskExecutor(cluster.scheduler_address)
        try:
            measurements, environment = fleet.run(target, [variant], BenchSpec(runs=4, warmup=1, rounds=2, profile=False),
                                                  samples, None, 0, executor, lambda line: None)
        finally:
            executor.close()
    (m,) = measurements
    assert m.status == "ok" and m.device == "alive", m.reason
    assert environment["fleet"]["members"]["dead"]["status"] == "quarantined"
    records = executor.records
    assert [r["device"] for r in records] == ["dead", "alive"] and all("://" in r["holder"] for r in records)  # a worker's address
    assert json.dumps(environment)  # the environment block is results.json material
