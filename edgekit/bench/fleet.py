"""A device target's rows as jobs on its devices: one device, or a pool's members.

The target splits its rows into jobs (``Target.split``: one job for a single device, one per
format and model for a pool). Each job is one task holding one device's lock
(``edgekit.locks``): for a pool, the first free member (``Hold.candidates``), so a build with N
members runs up to N jobs at once, on the build's executor (threads here, or tasks on a cluster
workers). The fleet of a build keeps, per member:

- its health: checked once per build before its first job (``SshTarget.health_problem``:
  reachable, Python, the runtimes, free disk in work_dir); a member that fails it is
  quarantined for the build;
- its faults in a row: a job the device itself failed (unreachable, dropped, timed out, after
  the profile's retries, ``targets.faults``) counts one, a job it finished resets the count; at
  the profile's ``quarantine_after`` it is quarantined.

A job a member failed moves to another member not tried for it yet; with none left, its rows are
``skipped`` (a pool: no device left to time them, naming each one tried and its last error) or
``failed`` (a single device, as before pools). Every failed try and move is in the rows'
``retries``; what the fleet decided is in results.json ``targets.<pool>.fleet``.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from edgekit import interrupts
from edgekit.errors import TaskFailed, WorkerDied, one_line
from edgekit.locks import Hold


@dataclass
class Outcome:
    """What one job's task sends back."""

    device: str
    measurements: list | None = None
    environment: dict | None = None
    unhealthy: str | None = None
    #: the failed tries of the health check's probe
    tries: list | None = None


@dataclass
class Fleet:
    """One build's record of a target's devices."""

    members: list[str]
    quarantine_after: dict[str, int]
    quarantined: dict[str, str] = field(default_factory=dict)
    in_a_row: dict[str, int] = field(default_factory=dict)
    healthy: set = field(default_factory=set)
    jobs: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, device: str, reason: str) -> bool:
        """Count a fault of ``device``; True when that quarantines it."""
        with self.lock:
            self.in_a_row[device] = self.in_a_row.get(device, 0) + 1
            if self.in_a_row[device] >= self.quarantine_after.get(device, 1):
                self.quarantined.setdefault(device, f"{self.in_a_row[device]} failed job(s) in a row, the last: {reason}")
                return True
        return False

    def done(self, device: str) -> None:
        with self.lock:
            self.in_a_row[device] = 0
            self.jobs[device] = self.jobs.get(device, 0) + 1
            self.healthy.add(device)

    def summary(self) -> dict:
        """results.json ``targets.<pool>.fleet``."""
        return {"members": {name: {"status": "quarantined" if name in self.quarantined else "ok",
                                   "reason": self.quarantined.get(name), "jobs": self.jobs.get(name, 0),
                                   "health": "ok" if name in self.healthy else None} for name in self.members}}


def run(target, variants, spec, samples, eval_inputs, seed: int, pool, log, sample_sets=None) -> tuple[list, dict | None]:
    """Every row of ``variants`` timed on ``target``'s devices (see the module docstring), on
    ``pool`` (the build's executor; None: threads of this process). Returns the measurements,
    in order, and the target's environment block."""
    members = target.members()
    fleet = Fleet([m.name for m in members],
                  {m.name: getattr(getattr(m, "profile", None), "quarantine_after", 1) for m in members})
    out: list = [target.precheck(v) for v in variants]  # rows no device could run: no job
    todo = [i for i, m in enumerate(out) if m is None]
    jobs = [[todo[k] for k in job] for job in target.split([variants[i] for i in todo]) if job]
    if not jobs:
        return out, target.environment()
    with ThreadPoolExecutor(len(jobs), thread_name_prefix="edgekit-job") as threads:
        futures = [threads.submit(_until_done, fleet, target, [variants[i] for i in job], spec, samples, eval_inputs,
                                  seed, pool, log, [sample_sets[i] for i in job] if sample_sets is not None else None)
                   for job in jobs]
        for job, future in zip(jobs, futures):
            for i, measurement in zip(job, future.result()):
                out[i] = measurement
    if target.is_pool:
        target.fleet = fleet.summary()
    return out, target.environment()


def _until_done(fleet: Fleet, target, variants, spec, samples, eval_inputs, seed, pool, log, sample_sets) -> list:
    """One job, moved from member to member until one times it or none is left."""
    from edgekit.targets import Measurement

    tried: set[str] = set()
    moves: list[dict] = []
    last: dict[str, str] = {}
    while True:
        with fleet.lock:
            allowed = [m for m in fleet.members if m not in fleet.quarantined and m not in tried]
        if not allowed:
            gone = "; ".join(f"{name}: {fleet.quarantined.get(name) or last.get(name)}" for name in fleet.members
                             if name in fleet.quarantined or name in last)
            reason = f"pool {target.name}: no device left to time it ({gone})"
            return [Measurement("skipped", reason, retries=moves or None) for _ in variants]
        hold = Hold(task=f"bench {target.name}", kind="bench", candidates=allowed if target.is_pool else None,
                    device=None if target.is_pool else target.name)
        outcome = _submit(pool, hold, target, variants, spec, samples, eval_inputs, seed, sample_sets,
                          set(fleet.healthy) if target.is_pool else None, log)
        device = outcome.device
        target.note_environment(device, outcome.environment)
        if outcome.unhealthy:
            with fleet.lock:
                fleet.quarantined[device] = f"health check failed: {outcome.unhealthy}"
            log(f"[device] {device}: health check failed ({outcome.unhealthy}); left out of this build")
            moves += outcome.tries or [{"device": device, "error": f"health check failed: {outcome.unhealthy}",
                                        "backoff_s": 0.0}]
            tried.add(device)
            continue
        faults = [m.fault for m in outcome.measurements if m is not None and getattr(m, "fault", None)]
        if not target.is_pool or not faults or len(faults) < len(outcome.measurements):
            if faults:
                fleet.fault(device, faults[0])
            else:
                fleet.done(device)
            for m in outcome.measurements:
                if moves:
                    m.retries = moves + list(m.retries or [])
            return outcome.measurements
        # the device failed the whole job (after its own retries): move the job elsewhere
        tries = next((m.retries for m in outcome.measurements if m.retries), None) or []
        moves += tries or [{"device": device, "error": faults[0], "backoff_s": 0.0}]
        last[device] = faults[0]
        if fleet.fault(device, faults[0]):
            log(f"[device] {device}: quarantined for this build ({fleet.quarantined[device]})")
        tried.add(device)
        log(f"[device] {device}: {faults[0]}; moving {len(variants)} row(s) to another device of {target.name}")


def _submit(pool, hold: Hold, target, variants, spec, samples, eval_inputs, seed, sample_sets, healthy, log) -> Outcome:
    """One job as one task holding ``hold``: on a cluster's worker when ``pool`` is remote, else
    here, inside the executor's hold (or the bare locks)."""
    from edgekit.bench.stage import _failed, _holding

    if getattr(pool, "remote", False):
        portable = target.portable()
        variants = [dataclasses.replace(v, session=None, opener=None) for v in variants]
        on_message = lambda kind, text: log(text) if kind == "log" else None  # noqa: E731
        try:
            return pool.submit(run_job, portable, variants, spec, samples, eval_inputs, seed, sample_sets, healthy,
                               on_message=on_message, hold=hold).result()
        except (WorkerDied, TaskFailed) as exc:
            return Outcome(hold.device or "?", [_failed(f"benchmark failed on the executor's worker: {exc}") for _ in variants])
    with _holding(pool, hold, log):
        return run_job(target, variants, spec, samples, eval_inputs, seed, sample_sets, healthy, log)


def run_job(target, variants, spec, samples, eval_inputs, seed: int, sample_sets=None, healthy=None, log=None) -> Outcome:
    """A task, inside its device lock: the job's rows on the device it holds
    (``locks.held_device``); first that device's health check when ``healthy`` (the members
    already checked in this build) does not hold it. ``log``: None in a worker (lines go back
    with ``executor_base.report``)."""
    from edgekit.locks import held_device

    device = held_device() or target.name
    member = target.member(device)
    if log is None:
        from edgekit.executors import base as executor_base

        log = lambda line: executor_base.report("log", line)  # noqa: E731
        member.log = log
    if healthy is not None and device not in healthy:
        problem = member.health_problem()
        if problem:
            return Outcome(device, unhealthy=problem, tries=member.tries() if hasattr(member, "tries") else None)
    measurements, environment = measure_rows(member, variants, spec, samples, eval_inputs, seed, sample_sets)
    return Outcome(device, measurements, environment)


def measure_rows(target, variants, spec, samples, eval_inputs, seed: int, sample_sets=None) -> tuple[list, dict | None]:
    """Every row of one device timed together (row by row if that fails); returns the
    measurements and the device's environment block."""
    from edgekit.bench.stage import _failed

    try:
        measurements = target.measure_all(variants, spec, samples, eval_inputs, seed=seed, sample_sets=sample_sets)
    except Exception as exc:  # noqa: BLE001
        interrupts.reraise_if_interrupted()
        reason = f"benchmark failed: {one_line(exc)}"
        measurements = []
        for i, variant in enumerate(variants):
            try:
                measurements.append(target.measure(variant, spec, samples if sample_sets is None else sample_sets[i],
                                                   eval_inputs))
            except Exception:  # noqa: BLE001
                interrupts.reraise_if_interrupted()
                measurements.append(_failed(reason))
    return measurements, target.environment()
