"""The ``cpu`` target: this machine, every variant, in the session it was evaluated with.

All rows are timed together, in interleaved rounds (``time_rounds``): on a shared machine a
slow phase then slows every row of a round alike, instead of deciding one row's p50.
"""

from __future__ import annotations

import time

from edgekit.bench import stats
from edgekit.errors import one_line
from edgekit.formats import FORMATS, SESSION
from edgekit.runtimes import one_sample_batch
from edgekit.targets import clocks
from edgekit.targets.base import Measurement, Target


class CpuTarget(Target):
    kind = "cpu"
    uses_host_session = True
    probes_here = True
    offers = frozenset({SESSION})
    interleaves = True
    order = 0
    #: called as ``progress(done, total)`` after each block of the timed rounds (the bench stage sets it)
    progress = None

    def __init__(self, name: str = "cpu"):
        self.name = name

    def supports(self, variant) -> bool:
        fmt = FORMATS.get(variant.format)  # None: the Keras baseline itself, which runs here
        return fmt is None or self.runs_format(fmt)

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        return self.measure_all([variant], spec, samples, eval_inputs)[0]

    def measure_all(self, variants, spec, samples, eval_inputs=None, seed: int = 0, sample_sets=None) -> list[Measurement]:
        """Every variant's session timed in the same interleaved rounds. ``sample_sets`` (one
        list of samples per variant) replaces ``samples`` where the models take different
        inputs (``edgekit bench`` on files)."""
        return time_together([v.session for v in variants], spec, samples, seed, sample_sets,
                             on_block=getattr(self, "progress", None))

    def environment(self) -> dict:
        from edgekit import environment

        return environment.collect()


def time_together(sessions, spec, samples, seed: int = 0, sample_sets=None, on_block=None) -> list[Measurement]:
    """Time ``sessions`` in interleaved rounds; a session that cannot run one sample fails its
    own row before the rounds start (the others are timed without it). ``on_block(done, total)``
    hears of each block timed (``time_rounds``)."""
    sets = sample_sets or [samples] * len(sessions)
    out: list[Measurement | None] = [None] * len(sessions)
    for k, (session, own) in enumerate(zip(sessions, sets)):
        try:
            session.run(session.prepare(one_sample_batch(own[0])))
        except Exception as exc:  # noqa: BLE001 - one broken session fails its own row
            out[k] = Measurement("failed", f"benchmark failed: {one_line(exc)}")
    live = [k for k in range(len(sessions)) if out[k] is None]
    # this machine's clocks and temperatures around each round ($EDGEKIT_SYSFS_ROOT or /sys)
    recorder = clocks.Recorder(None, getattr(spec, "wait_below_c", None), getattr(spec, "wait_timeout_s", 300.0))
    rounds = stats.time_rounds([sessions[k] for k in live], [sets[k] for k in live], spec.warmup, spec.runs,
                               spec.min_time_s, rounds=getattr(spec, "rounds", 1), seed=seed, per_session=True,
                               on_round=recorder, on_block=on_block)
    ended, read = time.time(), recorder.summary() if live else None
    for k, per_round in zip(live, rounds):
        harness = _harness(sessions[k], sets[k], getattr(spec, "runs", HARNESS_RUNS))
        # the settings of the session that was timed (a Keras session's TensorFlow threads)
        out[k] = Measurement("ok", latencies_ms=[t for r in per_round for t in r], rounds_ms=per_round,
                             interleaved=len(live) > 1, harness=harness, settings=dict(sessions[k].settings or {}),
                             clocks=read, measured_at=ended)
    return out


#: timed calls of each side of the harness figure, at most: no more than the recipe's own runs
#: (basic-pitch's 190 ms int8 TFLite model spent 84 s on a 200-run figure of a 20-run recipe)
HARNESS_RUNS = 200


def _harness(session, samples, runs: int = HARNESS_RUNS) -> dict | None:
    """The session's own figure of what its Python side costs per call, measured after the
    timed rounds (never during them), over at most ``runs`` calls of each side; None where it
    has none or it fails."""
    measure = getattr(session, "harness_cost", None)
    if measure is None:
        return None
    try:
        cost = measure(session.prepare(one_sample_batch(samples[0])), runs=max(1, min(HARNESS_RUNS, int(runs))))
    except Exception:  # noqa: BLE001 - a side figure must never fail the row
        return None
    # which of the two the row's latency_ms (and the table) shows
    return {**cost, "latency_ms_is": "call_ms: the whole timed call, Python side included"} if cost else None
