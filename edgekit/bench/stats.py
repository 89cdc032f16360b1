"""THE timing loop's statistics: summaries, and the 95% intervals of p50s and speedups.

The loop itself, ``time_rounds``, lives in ``edgekit/bench/timing.py``: that file is copied
to ssh devices with the device runner, where edgekit is not installed, so local and remote runs
are timed by the very same code. It times every row of a target in R interleaved rounds (see its docstring).

Why intervals from rounds, and why this method. Runs inside one round are not independent (a
slow phase of a shared machine slows a whole block), so a bootstrap over runs would give
intervals far too narrow. The rounds are the independent units: each round is a short window
of the machine's state. With R of them (5 by default) a bootstrap over rounds has only a few
distinct resamples and is too narrow too, so edgekit uses Student's t on the logarithm of the
per-round p50s: latencies are positive and their noise multiplicative, so a log scale makes an
interval of ``p50 x/ exp(t * se)``. For a ratio of two rows timed in the same rounds the
per-round log ratios are paired, and the pairing cancels what a slow phase did to both; rows
timed apart (different targets) combine their two standard errors. The point estimates stay
the p50 over all runs and the ratio of those p50s; the rounds only give the width.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from edgekit.bench.timing import time_rounds, time_session

__all__ = ["log_ratio_se", "ratio_interval", "summarize", "summarize_rounds", "t975", "time_rounds", "time_session"]

# Two-sided 95% quantiles of Student's t by degrees of freedom (scipy.stats.t.ppf(0.975, df)).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (rounded down to a
    tabulated df, which errs towards wider intervals)."""
    if df < 1:
        raise ValueError("an interval needs at least two rounds")
    return _T975[max(d for d in _T975 if d <= df)] if df < 1000 else 1.960


def summarize(latencies_ms: Sequence[float]) -> dict[str, Any]:
    """p50, p90, p99, mean, std (population), min, max and run count over all runs, in ms."""
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


def summarize_rounds(p50: float, rounds_ms: Sequence[Sequence[float]], unstable_spread: float | None = None,
                     interleaved: bool = False) -> dict[str, Any]:
    """What the rounds say about a row timed with overall ``p50``: each round's p50, their
    spread (std / mean) and robust spread (1.4826 x median absolute deviation / median, the
    std of a normal sample), their range (``range_ratio``: the slowest round p50 over the
    fastest, the single slowest round left out when there are three or more), the p50's 95%
    interval (two rounds or more), ``unstable`` (see below), and whether the rounds were
    interleaved with the target's other rows (ratios between such rows pair their rounds).

    ``unstable`` when the robust spread is past ``unstable_spread``, or the range past
    ``1 + BIMODAL x unstable_spread`` (1.30x at 10%). The robust spread alone forgives one slow
    round in five (on a shared machine one round can land in a slow phase, +50% here now and
    then; it moves the std a lot, the p50 over all runs little, and it already widens the
    interval), but it forgives two as well: rounds of 8.2 / 7.7 / 7.65 / 12.6 / 15.6 ms (two
    speeds: the machine was busy half the time) read 0.099. The range without the slowest round
    catches them (1.65x) and still forgives the one unlucky round."""
    medians = [float(np.median(r)) for r in rounds_ms if len(r)]
    mean = float(np.mean(medians)) if medians else 0.0
    middle = float(np.median(medians)) if medians else 0.0
    robust = 1.4826 * float(np.median(np.abs(np.asarray(medians) - middle))) / middle if middle > 0 else 0.0
    kept = sorted(medians)[:-1] if len(medians) >= 3 else sorted(medians)
    range_ratio = kept[-1] / kept[0] if kept and kept[0] > 0 else 1.0
    out: dict[str, Any] = {"rounds": len(medians), "round_p50_ms": medians,
                           "spread": float(np.std(medians) / mean) if mean > 0 else 0.0, "robust_spread": robust,
                           "range_ratio": float(range_ratio), "interleaved": bool(interleaved)}
    if len(medians) >= 2 and min(medians) > 0:
        half = t975(len(medians) - 1) * _log_se(medians)
        out["p50_ci95_ms"] = [float(p50 * math.exp(-half)), float(p50 * math.exp(half))]
    if unstable_spread is not None:
        out["unstable"] = bool(robust > unstable_spread or range_ratio > 1 + BIMODAL * unstable_spread)
    return out


#: how many times ``unstable_spread`` the round p50s (the slowest left out) may range before a row
#: is unstable: 3 robust standard deviations apart is two speeds, not noise
BIMODAL = 3


def _log_se(values: Sequence[float]) -> float:
    """Standard error of the mean of log(values)."""
    logs = np.log(np.asarray(values, dtype=np.float64))
    return float(logs.std(ddof=1) / math.sqrt(len(logs))) if len(logs) >= 2 else math.inf


def ratio_interval(numerator: dict | None, denominator: dict | None, paired: bool) -> list[float] | None:
    """95% interval of ``numerator p50 / denominator p50`` for two rows (``latency_ms`` and
    ``timing`` of results rows), or None when either was timed in fewer than two rounds (or a
    paired pair has a different number of rounds).

    Args:
        numerator, denominator: results rows.
        paired: the two were timed in the same interleaved rounds (same target, same run): the
            per-round log ratios are used, which cancels a slow phase that hit both.
    """
    se = log_ratio_se(numerator, denominator, paired)
    if se is None:
        return None
    point = numerator["latency_ms"]["p50"] / denominator["latency_ms"]["p50"]
    half = t975(se[1]) * se[0]
    return [float(point * math.exp(-half)), float(point * math.exp(half))]


def log_ratio_se(numerator: dict | None, denominator: dict | None, paired: bool) -> tuple[float, int] | None:
    """(standard error of log(numerator p50 / denominator p50), its degrees of freedom) for two
    results rows, from their rounds as in ``ratio_interval``; None where there is none."""
    a = ((numerator or {}).get("timing") or {}).get("round_p50_ms") or []
    b = ((denominator or {}).get("timing") or {}).get("round_p50_ms") or []
    if len(a) < 2 or len(b) < 2 or min(a) <= 0 or min(b) <= 0:
        return None
    if paired:
        if len(a) != len(b):
            return None
        diffs = np.log(np.asarray(a, dtype=np.float64)) - np.log(np.asarray(b, dtype=np.float64))
        return float(diffs.std(ddof=1) / math.sqrt(len(diffs))), len(diffs) - 1
    return math.hypot(_log_se(a), _log_se(b)), min(len(a), len(b)) - 1
