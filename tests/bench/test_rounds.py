"""Interleaved rounds and the intervals they give: the loop's order, the statistics, the verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.bench.stats import ratio_interval, summarize_rounds, t975, time_rounds
from edgekit.report.rows import add_speedups, make_row
from edgekit.runtimes import Session
from edgekit.targets import Measurement
from edgekit.variant import Variant


class Clocked(Session):
    """A session that records, on a shared log, when each of its runs happened."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def prepare(self, x):
        return x

    def run(self, feed):
        self.log.append(self.name)
        return feed


def test_every_round_times_every_session_once_in_a_shuffled_order():
    log: list[str] = []
    sessions = [Clocked(n, log) for n in "abcd"]
    rounds = time_rounds(sessions, [np.zeros(2, np.float32)], warmup=0, runs=12, rounds=4, seed=3)
    assert [len(r) for per in rounds for r in per] == [3] * 16  # 12 runs per session, 3 per round
    blocks = [log[i:i + 3] for i in range(0, 48, 3)]  # one block of 3 runs per session and round
    assert len(log) == 48 and all(len(set(block)) == 1 for block in blocks)
    orders = ["".join(block[0] for block in blocks[i:i + 4]) for i in range(0, 16, 4)]
    assert orders[0] == "abcd" and all(sorted(o) == list("abcd") for o in orders)
    assert len(set(orders)) > 1  # shuffled: a slow phase does not always hit the same session
    again: list[str] = []
    time_rounds([Clocked(n, again) for n in "abcd"], [np.zeros(2, np.float32)], 0, 12, rounds=4, seed=3)
    assert again == log  # the recipe's seed makes the order reproducible


def test_runs_are_split_exactly_and_rounds_never_outnumber_runs():
    log: list[str] = []
    [per] = time_rounds([Clocked("a", log)], [np.zeros(1, np.float32)], warmup=0, runs=7, rounds=5)
    assert [len(r) for r in per] == [2, 2, 1, 1, 1]
    [per] = time_rounds([Clocked("a", log)], [np.zeros(1, np.float32)], warmup=0, runs=3, rounds=5)
    assert [len(r) for r in per] == [1, 1, 1]


def test_later_rounds_warm_up_again_briefly():
    log: list[str] = []
    time_rounds([Clocked("a", log), Clocked("b", log)], [np.zeros(1, np.float32)], warmup=20, runs=4, rounds=2)
    # round 1: 20 + 2 runs each; round 2: 2 warm-up (a tenth) + 2 timed each
    assert len(log) == 2 * (22 + 4)


def test_per_session_samples():
    class Shape(Session):
        seen: list = []

        def prepare(self, x):
            Shape.seen.append(x.shape)
            return x

        def run(self, feed):
            return feed

    time_rounds([Shape(), Shape()], [[np.zeros(3, np.float32)], [np.zeros((2, 2), np.float32)]], 0, 2, per_session=True)
    assert Shape.seen == [(1, 3), (1, 2, 2)]


def test_p50_interval_brackets_the_p50_and_grows_with_the_round_spread():
    quiet = summarize_rounds(1.0, [[1.0, 1.0], [1.01, 1.01], [0.99, 0.99], [1.0, 1.0], [1.02, 1.02]], 0.1, True)
    busy = summarize_rounds(1.0, [[1.0], [1.8], [0.9], [1.7], [1.0]], 0.1, True)
    lo, hi = quiet["p50_ci95_ms"]
    assert lo < 1.0 < hi and hi / lo < 1.05 and not quiet["unstable"]
    assert busy["p50_ci95_ms"][1] / busy["p50_ci95_ms"][0] > 1.5 and busy["unstable"]
    assert busy["spread"] == pytest.approx(np.std([1.0, 1.8, 0.9, 1.7, 1.0]) / np.mean([1.0, 1.8, 0.9, 1.7, 1.0]))
    assert "p50_ci95_ms" not in summarize_rounds(1.0, [[1.0, 1.1]])  # one round: no interval


def test_one_unlucky_round_widens_the_interval_but_is_not_unstable():
    """A slow phase of the machine hits one round in five (+50%): the p50 over all runs hardly
    moves, so the row is not unstable; its interval is wider than a quiet row's."""
    unlucky = summarize_rounds(1.0, [[1.0], [1.5], [1.01], [0.99], [1.0]], 0.1, True)
    assert not unlucky["unstable"] and unlucky["robust_spread"] < 0.02 and unlucky["spread"] > 0.15
    lo, hi = unlucky["p50_ci95_ms"]
    assert hi / lo > 1.2


def _row(p50, rounds, target="cpu", interleaved=True):
    return {"target": target, "latency_ms": {"p50": p50},
            "timing": {"round_p50_ms": list(rounds), "interleaved": interleaved}}


def test_pairing_cancels_a_slow_phase_that_hit_both_rows():
    phases = [1.0, 1.8, 1.0, 1.7, 1.1]  # the machine's speed per round
    a, b = _row(2.0, [2.0 * p for p in phases]), _row(1.0, [1.0 * p for p in phases])
    lo, hi = ratio_interval(a, b, paired=True)
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)  # the same phase cancels exactly
    lo, hi = ratio_interval(a, b, paired=False)  # timed apart, the phases do not cancel
    assert lo < 1.6 and hi > 2.5
    assert ratio_interval(a, _row(1.0, [1.0]), paired=True) is None  # one round: no interval


def test_t_quantiles():
    assert t975(4) == pytest.approx(2.776) and t975(11) == pytest.approx(2.228)  # df 11 rounds down to 10
    assert t975(10_000) == pytest.approx(1.96)
    with pytest.raises(ValueError):
        t975(0)


def _timed(stem_format, precision, rounds_ms, model="base"):
    variant = Variant(format=stem_format, precision=precision, model=model, metrics={"accuracy": 0.9}, runtime="rt 1")
    m = Measurement("ok", latencies_ms=[t for r in rounds_ms for t in r], rounds_ms=rounds_ms, interleaved=True)
    return make_row(f"{variant.stem}@cpu", variant, "cpu", m, Variant(format="keras", precision="fp32"), 0.10)


def _rounds(p50s, per=5, jitter=0.0):
    rng = np.random.default_rng(0)
    return [[p * (1 + jitter * rng.standard_normal()) for _ in range(per)] for p in p50s]


def test_slower_verdict_only_when_the_interval_lies_above_one():
    phases = [1.0, 1.02, 0.99, 1.01, 1.0]
    base = _timed("keras", "fp32", _rounds([100 * p for p in phases]))
    fp32 = _timed("tflite", "fp32", _rounds([10 * p for p in phases]))
    slow = _timed("tflite", "int8", _rounds([14 * p * q for p, q in zip(phases, [1.0, 1.01, 0.99, 1.0, 1.0])]))
    rows = [base, fp32, slow]
    add_speedups(rows)
    [note] = slow["notes"]
    assert note.startswith("int8 slower than fp32 in rt 1: 1.40x [") and slow["vs_fp32_same_runtime"] == pytest.approx(1 / 1.4)
    lo, hi = slow["vs_fp32_same_runtime_ci95"]
    assert lo < 1 / 1.4 < hi < 1
    assert base["speedup_vs_baseline"] == 1 and base["speedup_vs_baseline_ci95"] is None
    assert fp32["speedup_vs_baseline_ci95"][0] < 10 < fp32["speedup_vs_baseline_ci95"][1]


def test_a_ratio_within_the_noise_says_no_significant_difference():
    fp32 = _timed("onnx", "fp32", _rounds([10, 10, 10, 10, 10]))
    noisy = _timed("onnx", "int8", _rounds([8.0, 13.0, 9.0, 12.5, 10.6]))  # p50 ~1.06x fp32, rounds all over
    add_speedups([_timed("keras", "fp32", _rounds([100] * 5)), fp32, noisy])
    assert any("no significant difference" in n for n in noisy["notes"])
    assert not any("slower than fp32" in n for n in noisy["notes"])
    assert any(n.startswith("unstable timing: the round p50s disagree by") for n in noisy["notes"])


def test_rows_timed_in_one_round_keep_the_threshold_and_say_so():
    fp32 = _timed("onnx", "fp32", [[10.0] * 5])
    slow = _timed("onnx", "int8", [[12.0] * 5])
    add_speedups([_timed("keras", "fp32", [[100.0] * 5]), fp32, slow])
    assert slow["notes"] == ["int8 slower than fp32 in rt 1: 1.20x (one round: no interval)"]
    assert slow["vs_fp32_same_runtime_ci95"] is None


def test_interval_matches_a_hand_computed_t_interval():
    rounds = [[1.0], [1.2], [0.9], [1.1], [1.05]]
    timing = summarize_rounds(1.05, rounds)
    logs = np.log([1.0, 1.2, 0.9, 1.1, 1.05])
    half = 2.776 * logs.std(ddof=1) / math.sqrt(5)
    assert timing["p50_ci95_ms"] == pytest.approx([1.05 * math.exp(-half), 1.05 * math.exp(half)])


def test_a_small_but_significant_slowdown_says_it_may_be_under_five_percent():
    phases = [1.0, 1.02, 0.99, 1.01, 1.0]
    fp32 = _timed("openvino", "fp32", _rounds([10 * p for p in phases]))
    slow = _timed("openvino", "int8", _rounds([10.6 * p * q for p, q in zip(phases, [1.0, 1.03, 0.98, 1.01, 0.99])]))
    add_speedups([_timed("keras", "fp32", _rounds([100] * 5)), fp32, slow])
    [note] = slow["notes"]
    assert note.startswith("int8 slower than fp32 in rt 1, possibly by less than 5%: 1.06x [")
    lo, _ = slow["vs_fp32_same_runtime_ci95"]
    assert 1 / lo > 1.05  # the interval reaches past 5% ...
    fine = _timed("openvino", "int8", _rounds([10.3 * p for p in phases]))  # 3% slower, clearly: no note
    add_speedups([_timed("keras", "fp32", _rounds([100] * 5)), fp32, fine])
    assert fine["notes"] == []


def test_two_speeds_are_unstable_though_the_robust_spread_forgives_them():
    """Rounds of 8.2 / 7.7 / 7.65 / 12.6 / 15.6 ms: two of five in a slow phase. The robust spread
    reads 0.099 (under 10%); their range without the slowest round, 1.65x, says two speeds."""
    bimodal = summarize_rounds(8.2, [[8.2], [7.7], [7.65], [12.6], [15.6]], 0.1, True)
    assert bimodal["robust_spread"] < 0.1 and bimodal["range_ratio"] == pytest.approx(12.6 / 7.65)
    assert bimodal["unstable"]
    assert not summarize_rounds(8.2, [[8.2], [8.0], [8.1], [8.3], [12.5]], 0.1, True)["unstable"]  # one unlucky round
    row = make_row("m.tflite@cpu", Variant(format="tflite", precision="fp32"), "cpu",
                   Measurement("ok", latencies_ms=[8.2] * 5, rounds_ms=[[8.2], [7.7], [7.65], [12.6], [15.6]]),
                   Variant(format="tflite", precision="fp32"), 0.1, again="edgekit bench")
    assert row["notes"] == ["unstable timing: the round p50s (7.65 / 7.7 / 8.2 / 12.6 / 15.6 ms) fall into two speeds: "
                            "1.65x apart without the slowest round (more than 1.30x); the machine was busy: time again "
                            "with `edgekit bench`"]
