"""THE timing loop. Every runtime and every target is timed here, the same way.

Inputs are prepared (quantized, converted to the runtime's type) before the clock starts;
then ``warmup`` untimed runs, then timed runs until both ``runs`` and ``min_time_s`` are
reached, cycling through the same fixed samples for every variant.

The loop itself, ``time_session``, lives in ``edgekit/targets/runner.py``: that file is
copied to ssh devices, where edgekit is not installed, so local and remote runs are timed by
the very same code.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgekit.targets.runner import time_session

__all__ = ["summarize", "time_session"]


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
