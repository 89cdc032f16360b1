"""The timing loop's semantics: warm-up, run counts, minimum time, prepared inputs, statistics."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgekit.bench.stats import summarize, time_session
from edgekit.runtimes import Session


class CountingSession(Session):
    """A pure-Python session that records what the loop did (the runtimes have their own tests)."""

    def __init__(self, work_s: float = 0.0):
        self.prepared, self.runs, self.work_s = [], [], work_s

    def prepare(self, x):
        self.prepared.append(x.shape)
        return float(x.sum())

    def run(self, feed):
        self.runs.append(feed)
        if self.work_s:
            time.sleep(self.work_s)
        return feed


def test_runs_warmup_then_exact_count_cycling_inputs():
    session = CountingSession()
    samples = [np.full((2, 2), i, np.float32) for i in range(3)]
    latencies = time_session(session, samples, warmup=4, runs=10)
    assert len(latencies) == 10
    assert len(session.runs) == 14
    assert session.prepared == [(1, 2, 2)] * 3  # prepared once each, batch 1, before timing
    assert session.runs[4:7] == [0.0, 4.0, 8.0]  # timed runs cycle through the same fixed inputs


def test_min_time_extends_the_run_count():
    session = CountingSession(work_s=0.002)
    latencies = time_session(session, [np.zeros(3, np.float32)], warmup=0, runs=2, min_time_s=0.05)
    assert sum(latencies) >= 50.0  # ms
    assert len(latencies) > 2


def test_summarize_matches_numpy_percentiles():
    values = list(range(1, 101))
    stats = summarize(values)
    assert stats["runs"] == 100
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(np.percentile(values, 90))
    assert stats["p99"] == pytest.approx(np.percentile(values, 99))
    assert stats["mean"] == pytest.approx(50.5)
    assert stats["std"] == pytest.approx(np.std(values))
    assert stats["min"] == 1 and stats["max"] == 100


def test_summarize_refuses_empty():
    with pytest.raises(ValueError):
        summarize([])
