"""Locks only around timing: a rebuild whose every stage comes from the cache takes no lock, so
another build's hold of this machine's CPU never holds it up; a build that must wait says who
it waits for and since when, and results.json keeps the wait apart from the stage times."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit import locks
from edgekit.cli import cli

REPO = Path(__file__).resolve().parents[2]

#: another process on this machine holding the CPU exclusive, as another build's bench stage does
HOLDER = """
import sys, time
from pathlib import Path
from edgekit.locks import Hold, holding
with holding(Hold(task="bench other", kind="bench", mode="exclusive")):
    Path(sys.argv[2]).touch()
    time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    monkeypatch.setenv("EDGEKIT_LOCK_DIR", str(folder))
    return folder


def _hold_the_cpu(tmp_path: Path, seconds: float) -> subprocess.Popen:
    """Start a process that holds this machine's CPU exclusive for ``seconds``, once it holds it."""
    marker = tmp_path / f"held-{time.monotonic_ns()}"
    # its name first: the lock's description shortens a long command line (a deep tmp_path) at its end
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "edgekit-test-holder", str(marker), str(seconds)],
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return holder


def test_a_cached_rebuild_waits_for_nobody_and_a_timing_one_says_who_it_waits_for(tiny_run, tmp_path, lock_dir):
    env = {"EDGEKIT_CACHE_DIR": str(tiny_run.dir.parent / "cache")}
    holder = _hold_the_cpu(tmp_path, 600)
    try:
        # Who holds it, read by any process: the holder's own pid and command line.
        described = locks.describe_holders("host.lock")
        assert f"pid {holder.pid} (" in described and "edgekit-test-holder" in described
        assert "bench other, exclusive since" in described
        started = time.monotonic()
        done = CliRunner(env=env).invoke(cli, ["build", str(tiny_run.recipe), "--out", str(tmp_path / "cached")])
        elapsed = time.monotonic() - started
        assert holder.poll() is None  # it held the lock all along
    finally:
        holder.kill()
        holder.wait()
    assert done.exit_code == 0, done.output
    assert "[lock]" not in done.output and elapsed < 120
    results = json.loads((tmp_path / "cached" / "results.json").read_text())
    assert results["waits"] == {} and results["tasks"] == []  # no lock was taken, none waited for
    assert set(results["reused"]["bench"]) and results["rows"][0]["latency_ms"] == tiny_run.results["rows"][0]["latency_ms"]

    # Without its timings (a copy of the cache, its bench entries gone) the rebuild must time the
    # rows: it waits for the holder, says who that is, and records the wait apart.
    cache = tmp_path / "cache"
    shutil.copytree(env["EDGEKIT_CACHE_DIR"], cache, ignore=shutil.ignore_patterns("bench"))
    # long enough to outlast the rebuild's way to its bench stage on a busy machine (3 s did not, once)
    holder = _hold_the_cpu(tmp_path, 8)
    try:
        done = CliRunner(env={"EDGEKIT_CACHE_DIR": str(cache)}).invoke(
            cli, ["build", str(tiny_run.recipe), "--out", str(tmp_path / "retimed")])
    finally:
        holder.kill()
        holder.wait()
    assert done.exit_code == 0, done.output
    waiting = next(line for line in done.output.splitlines() if line.startswith("[lock] waiting for"))
    assert "this machine's CPU (exclusive)" in waiting and f"held by pid {holder.pid} (" in waiting, waiting
    results = json.loads((tmp_path / "retimed" / "results.json").read_text())
    assert 0.5 < results["waits"]["bench"] < 60, results["waits"]
    bench = next(t for t in results["tasks"] if t["kind"] == "bench")
    assert bench["waited_s"] == pytest.approx(results["waits"]["bench"], abs=0.05)
    # the bench stage's time is its own work: the time between the hold and the stage's end
    assert results["stages"]["bench"] < bench["end"] - bench["start"] + 5
    assert "[bench]" in done.output and "waiting for another build's hold of this machine's CPU" in done.output


def test_a_dead_holders_record_is_never_blamed(lock_dir):
    """A holder killed outright leaves its file: waiters skip it (and remove it)."""
    lock_dir.mkdir(parents=True)
    (lock_dir / "holders").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = lock_dir / "holders" / f"host.lock.{dead.stdout.strip()}.0.json"
    stale.write_text(json.dumps({"pid": int(dead.stdout), "command": "edgekit build x.yaml", "mode": "exclusive",
                                 "task": "bench cpu", "since": time.time() - 50}))
    assert locks.describe_holders("host.lock") == "" and not stale.exists()
