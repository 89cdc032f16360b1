"""Targets: where a variant is timed. One entry per kind of target.

A target says which variants it can run and times them with the one loop in bench.py.
``cpu`` is this machine; ``gpu`` times the fp32 Keras baseline on a visible GPU (the reference
users compare edge numbers against) and is skipped, with the reason, when there is none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from edgekit import bench


@dataclass
class Measurement:
    status: str  # ok | failed | skipped
    reason: str | None = None
    latencies_ms: list[float] | None = None
    settings: dict | None = None


def _time_on_cpu(variant, spec, samples) -> Measurement:
    latencies = bench.time_session(variant.session, samples, spec.warmup, spec.runs, spec.min_time_s)
    return Measurement("ok", latencies_ms=latencies)


def _time_on_gpu(variant, spec, samples) -> Measurement:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return Measurement("skipped", "no GPU visible to TensorFlow; the speedup column is relative to the CPU baseline")
    from edgekit.runtimes.keras import open_session

    with tf.device(gpus[0].name):
        session = open_session(variant.session.model, spec.threads)
        latencies = bench.time_session(session, samples, spec.warmup, spec.runs, spec.min_time_s)
    return Measurement("ok", latencies_ms=latencies, settings={"device": gpus[0].name})


@dataclass(frozen=True)
class Target:
    name: str
    supports: Callable[[object], bool]
    measure: Callable[..., Measurement]


TARGETS: dict[str, Target] = {
    "cpu": Target("cpu", supports=lambda variant: True, measure=_time_on_cpu),
    "gpu": Target("gpu", supports=lambda variant: variant.format == "keras", measure=_time_on_gpu),
}
