"""The ``cpu`` target: this machine, every variant, in the session it was evaluated with."""

from __future__ import annotations

from edgekit.bench import stats
from edgekit.formats import FORMATS
from edgekit.targets.base import Measurement, Target


class CpuTarget(Target):
    kind = "cpu"
    uses_host_session = True
    order = 0

    def __init__(self, name: str = "cpu"):
        self.name = name

    def supports(self, variant) -> bool:
        fmt = FORMATS.get(variant.format)  # None: the Keras baseline itself, which runs here
        return fmt is None or self.kind in fmt.runs_on

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        latencies = stats.time_session(variant.session, samples, spec.warmup, spec.runs, spec.min_time_s)
        return Measurement("ok", latencies_ms=latencies)

    def environment(self) -> dict:
        from edgekit import environment

        return environment.collect()
