"""THE timing loop. Every runtime and every target is timed here, the same way.

Inputs are prepared (quantized, converted to the runtime's type) before the clock starts;
then ``warmup`` untimed runs, then timed runs until both ``runs`` and ``min_time_s`` are
reached, cycling through the same fixed samples for every variant.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np


def time_session(session, samples: Sequence[np.ndarray], warmup: int, runs: int, min_time_s: float = 0.0) -> list[float]:
    """Time ``session.run`` at batch 1.

    Args:
        session: a runtime session (see edgekit.runtimes.Session).
        samples: float32 samples, each of the model's input shape without the batch axis.
        warmup: untimed runs first.
        runs: minimum number of timed runs.
        min_time_s: keep timing until this much wall time has been spent in timed runs.

    Returns:
        Per-run latencies in milliseconds.
    """
    feeds = [session.prepare(np.asarray(x, dtype=np.float32)[None]) for x in samples]
    for i in range(warmup):
        session.run(feeds[i % len(feeds)])
    latencies_ns: list[int] = []
    spent_ns = 0
    min_time_ns = int(min_time_s * 1e9)
    i = 0
    while len(latencies_ns) < runs or spent_ns < min_time_ns:
        feed = feeds[i % len(feeds)]
        start = time.perf_counter_ns()
        session.run(feed)
        elapsed = time.perf_counter_ns() - start
        latencies_ns.append(elapsed)
        spent_ns += elapsed
        i += 1
    return [ns / 1e6 for ns in latencies_ns]


def summarize(latencies_ms: Sequence[float]) -> dict[str, Any]:
    """p50, p90, p99, mean, std (population), min, max and run count, in milliseconds."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latencies to summarize")
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "runs": int(values.size),
    }
