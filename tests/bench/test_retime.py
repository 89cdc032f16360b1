"""Rows whose rounds disagree are timed again before anyone gives up on them: all of the target's
rows together, at most benchmark.retime_unstable more times, the attempt with the fewest unstable
rows kept and recorded in results.json ``retimed``."""

from __future__ import annotations

from edgekit.bench.stage import _until_stable
from edgekit.recipe.schema import BenchmarkSpec
from edgekit.targets import Measurement

IDS = ["keras-fp32@cpu", "tflite-fp32@cpu", "tflite-int8@cpu"]
QUIET = [1.0, 1.01, 0.99, 1.015, 0.985]
BUSY = [1.0, 1.7, 0.98, 1.65, 1.02]  # two speeds: the machine was busy half the time


def _attempt(*busy_rows: str) -> list[Measurement]:
    """One timing of IDS (p50 1 ms), the rows named busy with rounds at two speeds."""
    out = []
    for row_id in IDS:
        rounds = [[r] * 4 for r in (BUSY if row_id in busy_rows else QUIET)]
        out.append(Measurement("ok", latencies_ms=[x for block in rounds for x in block], rounds_ms=rounds,
                               interleaved=True))
    return out


def _timing(*attempts):
    """``time_once`` that hands out ``attempts`` in order, counting the calls."""
    calls = []

    def time_once():
        calls.append(len(calls))
        return attempts[len(calls) - 1]

    return time_once, calls


def test_unstable_rows_are_timed_again_until_stable():
    first, second = _attempt("tflite-int8@cpu", "keras-fp32@cpu"), _attempt()
    time_once, calls = _timing(first, second, _attempt("keras-fp32@cpu"))
    retimed, lines = [], []
    kept = _until_stable(time_once, IDS, BenchmarkSpec(), "cpu", lines.append, retimed)
    assert kept is second and len(calls) == 2  # stable at the second attempt: no third
    assert retimed == [{"target": "cpu", "rows": IDS, "attempts": 2, "unstable": [["keras-fp32@cpu", "tflite-int8@cpu"],
                                                                                     []], "kept": 2, "limit": 2}]
    assert "2 row(s) unstable (keras-fp32@cpu, tflite-int8@cpu): timing its 3 row(s) again, attempt 2 of at most 3" \
        in lines[0]


def test_the_attempts_are_bounded_and_the_least_unstable_one_is_kept():
    attempts = (_attempt(*IDS), _attempt("tflite-int8@cpu"), _attempt("tflite-int8@cpu", "keras-fp32@cpu"))
    time_once, calls = _timing(*attempts)
    retimed = []
    kept = _until_stable(time_once, IDS, BenchmarkSpec(retime_unstable=2), "cpu", lambda line: None, retimed)
    assert len(calls) == 3 and kept is attempts[1] and retimed[0]["kept"] == 2
    assert [len(u) for u in retimed[0]["unstable"]] == [3, 1, 2]
    time_once, calls = _timing(*attempts)  # retime_unstable: 0 keeps the first timing, as it was
    assert _until_stable(time_once, IDS, BenchmarkSpec(retime_unstable=0), "cpu", print, retimed) is attempts[0]
    assert len(calls) == 1 and len(retimed) == 1


def test_a_build_records_what_it_timed_again(tiny_run):
    results = tiny_run.results
    assert isinstance(results["retimed"], list)
    for record in results["retimed"]:  # on a busy machine the tiny build's rows may well have been
        assert record["target"] == "cpu" and 2 <= record["attempts"] <= 3
        kept = record["unstable"][record["kept"] - 1]
        assert sorted(r["id"] for r in results["rows"] if (r.get("timing") or {}).get("unstable")) == sorted(kept)
