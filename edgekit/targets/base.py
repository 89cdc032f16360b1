"""What every target kind is: a Measurement, and the small abstract Target base."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class Measurement:
    """What a target measured for one variant.

    ``outputs`` (the variant's outputs on the test split, produced on the target) are set by
    targets that run elsewhere than the variant's evaluation session; the row's metrics and
    parity are then computed from them. ``runtime`` overrides the variant's runtime name.
    ``rounds_ms`` holds the same runs as ``latencies_ms``, per round (see
    ``edgekit.bench.timing.time_rounds``); ``interleaved`` says the rounds of this target's
    rows alternated, so ratios between them may pair round with round. ``harness`` is the
    session's ``harness_cost``: what the Python side of a call adds to the runtime's own time.
    ``probe`` is the row's peak memory and per-op profile measured where it ran, by
    ``edgekit.runtimes.probe`` (``{"memory", "profile", "profile_error"}``), for targets that
    probe their rows themselves (an ssh device); None: not probed there.

    What the fleet side adds (``edgekit.targets.fleet``): ``clocks``, the CPU frequencies,
    governors and temperatures read around the rounds (``edgekit.targets.clocks.summarize``);
    ``device``, the device that measured the row (a pool's member); ``retries``, one entry
    per failed try before this outcome (``{"device", "error", "backoff_s"}``, a move to another
    member included); ``measured_at``, the Unix time the rounds ended (kept by the cache, so a
    cached row keeps its time: the history's key); ``fault``, set on a failed measurement whose
    device failed (unreachable, timed out, unhealthy) rather than the row's own artifact.
    """

    status: str  # ok | failed | skipped | interrupted
    reason: str | None = None
    latencies_ms: list[float] | None = None
    settings: dict | None = None
    outputs: Any = None
    environment: dict | None = None
    runtime: str | None = None
    rounds_ms: list | None = None
    interleaved: bool = False
    harness: dict | None = None
    probe: dict | None = None
    clocks: dict | None = None
    device: str | None = None
    retries: list | None = None
    measured_at: float | None = None
    fault: str | None = None


class Target(ABC):
    """Where a variant is timed. One subclass per kind (cpu, gpu, ssh, ...), in its own module,
    listed once in ``edgekit.targets.KINDS``. Two methods to write, a few facts to set.

    Attributes:
        kind: the kind's name (``cpu``, ``gpu``, ``ssh``); device profiles name it in ``kind:``.
        name: the target's name in recipes and row ids (``cpu``, or the device profile's name).
        evaluates: the row's metrics come from this target's own outputs
            (``Measurement.outputs``), not from the variant's evaluation on this machine.
        uses_host_session: it times the session the variant was evaluated with on this
            machine, so ``edgekit bench`` must open one.
        is_reference: its Keras fp32 row, when timed, is what speedups are relative to.
        interleaves: ``measure_all`` times all rows together in interleaved rounds; the
            bench stage then measures (and caches) the target's rows as one group.
        order: rows of targets with a lower order come first (the first row of a build is
            the Keras fp32 baseline on this machine).
        times_here: its timings run on the machine of the build (this CPU, its GPU, an
            interpreter on the host), so they hold the host lock exclusive (``edgekit.locks``);
            False: a device elsewhere, benchmarked by one task at a time (the device's lock),
            different devices at once.
        measures_latency: its ok rows hold measured latencies; False: a kind that only
            compiles (ethos-u: Vela's estimate instead, in its own field), whose rows have none.
        offers: the ways of running an artifact it provides (``edgekit.formats.SESSION``, ...);
            it can time a format whose row lists one of them in ``Format.runs_with``
            (``runs_format``). Nothing names a target kind in a format row.
        probes_here: each of its ok rows is probed (per-op profile, peak memory) in a fresh
            process on this machine before the timed rounds (``edgekit.bench.profiles``), the
            Keras row's while the variants convert; False: no probe here (a device probes its
            rows itself and returns them in ``Measurement.probe``).
        profile_model: for kinds named by a device profile's ``kind:``, the pydantic schema
            of that profile (a ``profiles.ProfileBase``); the object is made as
            ``cls(profile, log)``. Built-in kinds (a target name by themselves) have none and
            are made as ``cls(name)``.
    """

    kind: ClassVar[str] = ""
    evaluates: ClassVar[bool] = False
    uses_host_session: ClassVar[bool] = False
    is_reference: ClassVar[bool] = False
    interleaves: ClassVar[bool] = False
    order: ClassVar[int] = 2
    times_here: ClassVar[bool] = True
    measures_latency: ClassVar[bool] = True
    offers: ClassVar[frozenset[str]] = frozenset()
    probes_here: ClassVar[bool] = False
    profile_model: ClassVar[type | None] = None
    #: several devices under one name (targets/pool.py): its rows go to free members in jobs
    #: (``split``), and a row no member is left to time is skipped rather than failed
    is_pool: ClassVar[bool] = False

    name: str = ""

    @classmethod
    def make(cls, profile, log=None) -> Target:
        """The target of a device profile of this kind (a kind may make a pool of several)."""
        return cls(profile, log)

    def members(self) -> list[Target]:
        """The devices that time this target's rows: itself, or a pool's members."""
        return [self]

    def member(self, name: str) -> Target:
        """The member called ``name`` (a pool's), or this target."""
        return self

    def split(self, variants) -> list[list[int]]:
        """How the rows go out in jobs (indices of ``variants``): one job of all of them, or a
        pool's several."""
        return [list(range(len(variants)))]

    def note_environment(self, device: str, environment: dict | None) -> None:  # noqa: B027 - optional hook
        """Keep the environment a member's job sent back from another process (a Dask worker)."""

    def precheck(self, variant) -> Measurement | None:
        """The row of ``variant`` when it is known without running a job (a device's profile lists
        no runtime for its format: skipped), else None: the fleet sends no job for it."""
        return None

    @classmethod
    def runs_format(cls, fmt) -> bool:
        """Whether this kind offers a way to run the artifacts of ``fmt`` (a format-table row)."""
        return fmt is not None and not cls.offers.isdisjoint(fmt.runs_with)

    def check(self, say: Callable[[str], None]) -> list[str] | None:
        """``edgekit devices check``: reach the device, ``say`` what it has, one line each, and
        return what keeps it from timing rows (empty: ready); None: this kind has nothing to
        check (the command says so, exit 1)."""
        return None

    def portable(self) -> Target:
        """A copy to send to a task on another machine: without its log (a function of this process)."""
        clone = copy.copy(self)
        clone.log = None
        return clone

    @abstractmethod
    def supports(self, variant) -> bool:
        """Whether this target can run ``variant`` (an ``edgekit.variant.Variant``)."""

    @abstractmethod
    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        """Time ``variant`` with the timing loop (``spec``: warmup, runs, min_time_s, threads)
        over ``samples``; when ``evaluates``, also return its outputs on ``eval_inputs``.
        A missing runtime or device is a skipped or failed Measurement with a one-line reason."""

    def measure_all(self, variants, spec, samples, eval_inputs=None, seed: int = 0,
                    sample_sets=None) -> list[Measurement]:
        """Time every one of ``variants`` (all ok and supported here): one Measurement each, in order.

        The default measures them one after another, each in ``spec.rounds`` rounds of its
        own. Kinds that can hold every session at once (this machine's CPU, an ssh device's
        runner) override it to interleave the rounds of all rows, shuffled per round with
        ``seed`` (and set ``interleaves``). ``sample_sets``: one list of samples per variant,
        replacing ``samples`` where the models take different inputs (``edgekit bench``).
        """
        sets = sample_sets or [samples] * len(variants)
        return [self.measure(v, spec, own, eval_inputs) for v, own in zip(variants, sets)]

    def environment(self) -> dict:
        """What this target is, for results.json's ``targets`` block."""
        return {}

    def cache_identity(self) -> dict:
        """Plain data that tells this target apart in the bench cache key: a measurement is
        reused only where this is unchanged. The default is this machine's CPU model and ISA
        flags; a device names its profile, the gpu target its backends and GPUs."""
        from edgekit.environment import cpu_info

        return {"cpu": cpu_info()}

    def unsupported_reason(self, variant) -> str:
        """One line for the row of a variant this target does not support."""
        return f"target {self.name} cannot run {variant.format}"
