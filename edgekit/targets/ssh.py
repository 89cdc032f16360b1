"""The ``ssh`` target kind: a device reached over ssh (devices/NAME.yaml, ``kind: ssh``), where
the device runner times every artifact the device has a runtime for, with edgekit's own
runtime sessions (see edgekit.targets.job); the outputs for the metrics and the latencies
both come from the device. The transport and its security rules: edgekit.targets.ssh_transport.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgekit.errors import DeviceError
from edgekit.formats import FORMATS, SESSION
from edgekit.targets import job as jobs
from edgekit.targets.base import Measurement, Target
from edgekit.targets.profiles import ProfileBase, local_path
from edgekit.targets.ssh_transport import CLEANUP, UPLOAD, Completed, Connection, tar

#: profile runtime names that are not the module's own name
RUNTIME_ALIASES = {"litert": "ai_edge_litert"}


def runtime_names() -> dict[str, str]:
    """Runtime names a profile may list -> the module the runner imports: every module of the
    format table's ``runtime_packages``, under its alias where it has one."""
    modules = dict.fromkeys(m for fmt in FORMATS.values() for m in fmt.runtime_packages)
    aliases = {alias: module for alias, module in RUNTIME_ALIASES.items() if module in modules}
    return {**aliases, **{m: m for m in modules if m not in aliases.values()}}


HOST_PATTERN = r"^[A-Za-z0-9_.:\[\]%][A-Za-z0-9_.:\[\]%-]*$"
USER_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]*$"


class Member(BaseModel):
    """One device of a profile's ``hosts:`` list: the rest of the profile is shared."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(pattern=HOST_PATTERN, description="host name or address")
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=100,
                             description="the device's name in rows and locks (default: its host, or host:port)")
    port: int | None = Field(None, ge=1, le=65535)
    user: str | None = Field(None, pattern=USER_PATTERN)
    python: str | None = Field(None, min_length=1)
    work_dir: str | None = Field(None, min_length=1)
    sysfs_root: str | None = Field(None, min_length=1)
    timeout_s: float | None = Field(None, gt=0, description="this device's own timeout_s (a slower board)")


class SshProfile(ProfileBase):
    """devices/NAME.yaml of kind ssh: how to reach a device (or a pool of like devices) and what it can run."""

    host: str | None = Field(None, pattern=HOST_PATTERN, description="host name or address (or hosts: for a pool)")
    hosts: list[str | Member] | None = Field(
        None, min_length=1, max_length=256,
        description="a pool of like devices instead of one host: each a host name, or {host, name, port, user, python, "
                    "work_dir, sysfs_root, timeout_s}; the rest of the profile is shared. Targets name the profile; each job "
                    "runs on a free member")
    pool: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
                             description="the pool this device belongs to: several profiles with the same pool: "
                                         "form a target of that name (a profile's own name stays a target too)")
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, pattern=USER_PATTERN, description="login user (default: ssh's)")
    identity_file: Path | None = Field(None, description="private key; relative to the profile file")
    known_hosts: Path = Field(Path("~/.ssh/known_hosts"), description="known_hosts file that must hold the device's host key")
    python: str = Field("python3", min_length=1, description="the device's Python (needs numpy and a runtime)")
    work_dir: str = Field("/tmp", min_length=1,
                          description="folder on the device for per-run temporary folders (~ is the login user's home)")
    runtimes: list[str] = Field(min_length=1, description="runtimes installed in that Python (see runtime_names())")
    connect_timeout_s: float = Field(10.0, gt=0, description="ssh ConnectTimeout")
    timeout_s: float = Field(900.0, gt=0, description="longest one remote step (upload, run, cleanup) may take")
    retries: int = Field(2, ge=0, le=10, description="tries again after a connection error or a step past its "
                         "timeout (never after a refused host key or login), waiting backoff_s, then twice that, ...")
    backoff_s: float = Field(1.0, ge=0, le=600, description="wait before the first retry; doubled before each next one")
    quarantine_after: int = Field(2, ge=1, le=100, description="a pool member whose jobs failed this many times in a "
                                  "row (after their retries) is left out for the rest of the build")
    min_free_mb: float = Field(50.0, ge=0, description="a pool member with less free disk in work_dir fails its "
                               "health check (and `edgekit devices check`)")
    wait_below_c: float | None = Field(None, gt=-50, lt=200, description="before each timed round on this device, wait "
                                       "until its hottest thermal zone is below this (default: the recipe's "
                                       "benchmark.wait_below_c)")
    wait_timeout_s: float | None = Field(None, gt=0, le=86400, description="longest one wait (default: the recipe's "
                                         "benchmark.wait_timeout_s)")
    sysfs_root: str | None = Field(None, min_length=1, description="where the device's /sys is read for clocks and "
                                   "temperatures (default /sys; a folder laid out like it, for tests)")

    @model_validator(mode="after")
    def _one_host_or_a_pool(self):
        if (self.host is None) == (self.hosts is None):
            raise ValueError("host: give either host (one device) or hosts (a pool of like devices), not "
                             + ("both" if self.host else "neither"))
        if self.hosts is not None and self.pool is not None:
            raise ValueError("pool: a profile with hosts: is a pool itself (named by its file); pool: is for "
                             "single-host profiles that form a pool together")
        if self.hosts is not None:
            from edgekit.targets.pool import member_names

            member_names(self)  # raises on two members of one name
        return self
    @field_validator("runtimes")
    @classmethod
    def _known_runtimes(cls, value: list[str]) -> list[str]:
        # Checked against the live format table, so a format registered later is accepted too.
        names = runtime_names()
        for i, name in enumerate(value):
            if name not in names:
                listed = ", ".join(repr(n) for n in list(names)[:-1]) + f" or {list(names)[-1]!r}"
                raise ValueError(f"runtimes[{i}]: expected {listed}, received {name!r}")
        return value

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def modules(self) -> list[str]:
        """Runtime modules in the profile's order."""
        names = runtime_names()
        return [names[r] for r in self.runtimes]

    def modules_for(self, runtime_packages: tuple[str, ...]) -> list[str]:
        """The profile's runtime modules that can run a format (``Format.runtime_packages``)."""
        return [m for m in runtime_packages if m in self.modules]

    def describe(self) -> str:
        if self.hosts is not None:
            from edgekit.targets.pool import member_names

            return f"pool of {len(self.hosts)}: {', '.join(member_names(self))}"
        return f"{self.destination}:{self.port}"

    def listing(self) -> str:
        pool = f"  pool: {self.pool}" if self.pool else ""
        return (f"{self.describe():<30} runtimes: {', '.join(self.runtimes):<28} python: {self.python}  "
                f"work_dir: {self.work_dir}{pool}")

    def resolve_paths(self, base: Path) -> None:
        if self.identity_file is not None:
            self.identity_file = local_path(self.identity_file, base)
        self.known_hosts = local_path(self.known_hosts, base)


class SshTarget(Target):
    """An ssh device; every artifact format it has a runtime for."""

    kind = "ssh"
    evaluates = True
    interleaves = True
    times_here = False
    offers = frozenset({SESSION})
    profile_model = SshProfile

    def __init__(self, profile: SshProfile, log: Callable[[str], None] | None = None):
        self.profile, self.name, self.log = profile, profile.name, log
        self._environment: dict[str, Any] | None = None
        self._unreachable: str | None = None  # set once ssh itself failed: later rows fail at once
        self._tries: list[dict] = []  # the failed tries of the last job (faults.with_retries)

    @classmethod
    def make(cls, profile: SshProfile, log: Callable[[str], None] | None = None) -> Target:
        """The target of a profile: one device, or a pool of like devices (``hosts:``)."""
        if profile.hosts is not None:
            from edgekit.targets.pool import PoolTarget, member_profiles

            return PoolTarget(profile.name, [cls(member, log) for member in member_profiles(profile)], log)
        return cls(profile, log)

    def clock_settings(self, spec) -> dict:
        """The job's ``clocks`` block: where /sys is, and the wait for the temperature (the
        profile's wait_below_c, else the recipe's)."""
        p = self.profile
        return {"sysfs_root": p.sysfs_root,
                "wait_below_c": p.wait_below_c if p.wait_below_c is not None else getattr(spec, "wait_below_c", None),
                "wait_timeout_s": p.wait_timeout_s or getattr(spec, "wait_timeout_s", 300.0)}

    def health_problem(self) -> str | None:
        """Why this device should not take jobs now (``faults.health_problems`` of its probe, the
        probe retried as any step), or None; the failed tries are kept as a job's are."""
        from edgekit.targets import faults

        try:
            info = self._run(lambda: probe(self.profile))
        except DeviceError as exc:
            return str(exc)
        problems = faults.health_problems(self.profile, info)
        return "; ".join(problems) if problems else None

    def check(self, say) -> list[str]:
        """Connect and report the device (``edgekit.targets.ssh_check``)."""
        from edgekit.targets import ssh_check

        return ssh_check.check(self.name, self.profile, say)

    def tries(self) -> list[dict]:
        """The failed tries of the last step (a job, or the health check's probe)."""
        return list(self._tries)

    def _run(self, call):
        """``call()`` with the profile's retries; the failed tries are kept for the job's rows."""
        from edgekit.targets import faults

        try:
            result, self._tries = faults.with_retries(self.profile, call, self.log)
        except DeviceError as exc:
            self._tries = list(getattr(exc, "tries", []))
            raise
        return result

    def supports(self, variant) -> bool:
        fmt = FORMATS.get(variant.format)  # the Keras model needs TensorFlow: never on a device
        return self.runs_format(fmt)

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        """One artifact in a job of its own (what ``measure_all`` falls back to when a runtime
        crashed the device's runner: alone, the crash fails only its own row)."""
        if (m := self._cannot_run(variant)) is not None:
            return m
        fmt, p = FORMATS[variant.format], self.profile
        try:
            run = self._run(lambda: run_artifact(
                p, fmt, variant.files, p.modules_for(fmt.runtime_packages), samples, eval_inputs, warmup=spec.warmup,
                runs=spec.runs, min_time_s=spec.min_time_s, threads=spec.threads, rounds=getattr(spec, "rounds", 1),
                options=_options(variant), log=self.log, clocks=self.clock_settings(spec)))
        except DeviceError as exc:
            return self._device_failed(exc)
        self._environment = {"device": self.name, "host": p.describe(), "profile": str(p.path), **run.environment}
        probe = None if self._probe_settings(spec) is None else {
            "memory": None, "profile": None,
            "profile_error": "not probed: timed in a job of its own (after the device's runner died), which carries no probe"}
        return Measurement("ok", latencies_ms=run.latencies_ms, rounds_ms=run.rounds_ms, outputs=run.outputs,
                           runtime=run.runtime, environment=self._environment, settings={**run.settings, "device": self.name},
                           probe=probe, clocks=run.clocks, device=self.name, retries=list(self._tries) or None,
                           measured_at=time.time())

    def measure_all(self, variants, spec, samples, eval_inputs=None, seed: int = 0, sample_sets=None) -> list[Measurement]:
        """Every artifact the device can run, in one job, timed together in interleaved rounds
        like the host's rows; a runner that dies (a runtime's segfault) is retried row by row.
        ``sample_sets``: one list of samples per variant, where the models take different inputs."""
        out: list[Measurement | None] = [self._cannot_run(v) for v in variants]
        todo = [i for i, m in enumerate(out) if m is None]
        if not todo:
            return out
        p = self.profile
        entries = [(FORMATS[variants[i].format], variants[i].files, p.modules_for(FORMATS[variants[i].format].runtime_packages),
                    _options(variants[i])) for i in todo]
        sets = [sample_sets[i] for i in todo] if sample_sets is not None else None
        payload = jobs.group_job_files(entries, samples, eval_inputs, warmup=spec.warmup, runs=spec.runs,
                                       min_time_s=spec.min_time_s, threads=spec.threads, rounds=getattr(spec, "rounds", 1),
                                       seed=seed, bench_sets=sets, probe=self._probe_settings(spec),
                                       precisions=[getattr(variants[i], "precision", None) for i in todo],
                                       clocks=self.clock_settings(spec))
        try:
            result = self._run(lambda: run_payload(p, payload, f"{len(todo)} artifact(s)", log=self.log))
        except DeviceError as exc:
            crashed = "killed by" in str(exc) or "without a result" in str(exc)  # the runner's own words
            if exc.connection or not crashed:
                for i in todo:
                    out[i] = self._device_failed(exc)
                return out
            if self.log:
                self.log(f"[device] {self.name}: {exc}; timing each artifact on its own to find the one that crashed")
            for i in todo:
                out[i] = self.measure(variants[i], spec, samples if sample_sets is None else sample_sets[i], eval_inputs)
            return out
        from edgekit.targets.runner import decode_array

        self._environment = {"device": self.name, "host": p.describe(), "profile": str(p.path), **result["environment"]}
        ended, tries = time.time(), list(self._tries) or None
        for i, row in zip(todo, result["rows"]):
            if "error" in row:
                out[i] = Measurement("failed", f"device {self.name}: {row['error']}", device=self.name, retries=tries)
                continue
            out[i] = Measurement("ok", latencies_ms=row["latencies_ms"], rounds_ms=row["rounds_ms"],
                                 interleaved=bool(row.get("interleaved")), runtime=row["runtime"],
                                 outputs=decode_array(row["outputs"]) if row.get("outputs") else None,
                                 environment=self._environment, settings={**row["settings"], "device": self.name},
                                 probe=row.get("probe") if isinstance(row.get("probe"), dict) else None,
                                 clocks=result.get("clocks"), device=self.name, retries=tries, measured_at=ended)
        return out

    def _probe_settings(self, spec) -> dict | None:
        """The job's ``probe`` block: each row's memory and per-op profile, measured on the device
        after its rows are timed (``runner.probe_row``), as ``edgekit.bench.profiles`` does on
        the host (same probe, same timeout, runs and samples); None under ``benchmark.profile:
        false`` (``edgekit bench --no-profile``).
        All probes of a job together get at most half the profile's ``timeout_s`` (counted from
        the end of the timed rounds; a probe past it is not started, a row's is cut at its
        remainder), so probing adds at most that to the device's run."""
        if not getattr(spec, "profile", False):
            return None
        from edgekit.bench import profiles

        return {"timeout_s": profiles.TIMEOUT_S, "budget_s": self.profile.timeout_s / 2, "runs": profiles.RUNS,
                "samples": 16}

    def precheck(self, variant, name: str | None = None) -> Measurement | None:
        """The skipped row of a variant whose format the profile lists no runtime for (no job
        needed to know it), naming the device (or ``name``: its pool), else None."""
        fmt, p = FORMATS[variant.format], self.profile
        if not p.modules_for(fmt.runtime_packages):
            wanted = " or ".join(name for name, module in runtime_names().items() if module in fmt.runtime_packages)
            return Measurement("skipped", f"{name or f'device {self.name}'} has no runtime for {fmt.name}: its profile "
                               f"lists {', '.join(p.runtimes)}; install {wanted} there and add it to runtimes in "
                               f"{Path(p.path).name}")
        return None

    def _cannot_run(self, variant) -> Measurement | None:
        """The row's measurement when the device cannot run ``variant`` at all, else None."""
        if (skipped := self.precheck(variant)) is not None:
            return skipped
        if self._unreachable:
            return Measurement("failed", self._unreachable, device=self.name, fault=self._unreachable)
        return None

    def _device_failed(self, exc: DeviceError) -> Measurement:
        """The row of a job the device itself failed (after its retries): a fault of the device,
        which a pool moves to another member (``edgekit.bench.fleet``)."""
        reason = f"device {self.name}: {exc}"
        if exc.connection:
            self._unreachable = reason
        return Measurement("failed", reason, device=self.name, retries=list(self._tries) or None, fault=str(exc))

    def note_environment(self, device: str, environment: dict | None) -> None:
        if environment:
            self._environment = environment

    def cache_identity(self) -> dict:
        # The probe's code too: a cached device row carries the probe's results (Measurement.probe).
        from edgekit.cache import source_hash

        return {**self.profile.model_dump(mode="json"), "probe_code": source_hash("edgekit.runtimes.probe")}

    def environment(self) -> dict:
        if self._environment is not None:
            return self._environment
        base = {"device": self.name, "host": self.profile.describe(), "profile": str(self.profile.path)}
        return {**base, "error": self._unreachable} if self._unreachable else {**base, "note": "no row ran on this device"}


# --------------------------------------------------------------------------- runs on a device


def _result(completed: Completed, what: str, profile: SshProfile) -> dict[str, Any]:
    """The runner's EDGEKIT-RESULT payload, or a DeviceError with the best one-line reason."""
    payload = jobs.result_payload(completed.stdout)
    if payload is None:
        _no_result(completed, what, profile)
    if "error" in payload:
        raise DeviceError(payload["error"])
    return payload


def _no_result(completed: Completed, what: str, profile: SshProfile):
    stderr = [line.strip() for line in completed.stderr.strip().splitlines() if line.strip()]
    last = stderr[-1] if stderr else ""
    if completed.returncode == 127:
        raise DeviceError(f"{profile.python!r} not found on the device ({last or 'exit status 127'}); "
                          f"set python: in {profile.path.name if profile.path else 'the profile'}")
    if "No module named 'numpy'" in last:
        raise DeviceError(f"{what} failed on the device: {last}; the runner needs numpy in {profile.python} "
                          "(pip install 'numpy<2' next to tflite-runtime)")
    if completed.returncode == 255 and not last:
        raise DeviceError(f"{what} ended without a result: the remote process was killed (ssh exit status 255, "
                          "no error from ssh)")
    raise DeviceError(f"{what} failed on the device (exit status {completed.returncode}): {last or 'no output'}")


def probe(profile: SshProfile, connection: Connection | None = None) -> dict[str, Any]:
    """Connect and describe the device: Python, CPU, ISA flags, numpy, every runtime and the work dir.

    The runner is streamed to ``python -`` on stdin: nothing is written on the device.

    Raises:
        DeviceError: the device cannot be reached, or its Python cannot run the runner.
    """
    conn = connection or Connection(profile)
    argv = [profile.python, "-", "--probe", "--work-dir", profile.work_dir, "--modules", ",".join(runtime_names().values())]
    completed = conn.run(argv, stdin=jobs.RUNNER.read_bytes(), timeout=profile.connect_timeout_s + 60)
    return _result(completed, "the probe", profile)


@dataclass
class RemoteRun:
    """What the runner sent back from a device."""

    runtime: str
    settings: dict[str, Any]
    input_shape: list[int]
    latencies_ms: list[float]
    outputs: np.ndarray | None
    environment: dict[str, Any]
    remote_dir: str
    rounds_ms: list[list[float]] | None = None  # the same runs, per round
    clocks: dict[str, Any] | None = None  # read around the rounds (edgekit.targets.clocks)


def run_payload(profile: SshProfile, payload: dict, what: str, log=None, connection: Connection | None = None) -> dict:
    """Copy a job (``edgekit.targets.job``) to the device, run the runner on it, read its
    result back, remove the copy. Returns the runner's payload plus ``remote_dir``.

    Raises:
        DeviceError: with a one-line reason; the temporary folder on the device is removed.
    """
    conn = connection or Connection(profile)
    uploaded = conn.run([profile.python, "-c", UPLOAD, profile.work_dir], stdin=tar(payload))
    if uploaded.returncode != 0:
        _no_result(uploaded, "copying files", profile)
    try:  # the last line is the run folder; a login script printing to stdout would break that
        remote_dir = json.loads(uploaded.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise DeviceError(f"copying files: expected the run folder as the last line of the device's reply, received "
                          f"{uploaded.stdout[-200:]!r}; does a login script on {profile.describe()} print to stdout?") from None
    if log:
        log(f"[device] {profile.name}: {what} -> {profile.describe()}:{remote_dir}")
    try:
        completed = conn.run([profile.python, posixpath.join(remote_dir, jobs.RUNNER_NAME), "--exit-on-stdin-eof",
                              posixpath.join(remote_dir, "job.json")], hold_stdin=True)
        result = _result(completed, "the runner", profile)
    finally:
        try:
            conn.run([profile.python, "-c", CLEANUP, remote_dir], timeout=profile.connect_timeout_s + 30)
        except DeviceError as exc:  # the result stands; a leftover folder is only worth a line in the log
            if log:
                log(f"[device] {profile.name}: could not remove {remote_dir}: {exc}")
    return {**result, "remote_dir": remote_dir}


def _options(variant) -> dict:
    """The variant's runtime options a job can carry (plain values only)."""
    options = {k: v for k, v in variant.settings.items() if isinstance(v, (str, int, float, bool))}
    if variant.settings.get("input_shapes"):  # free dimensions `edgekit bench` fixed: {input name: shape}
        options["input_shapes"] = {str(k): [int(d) for d in v] for k, v in variant.settings["input_shapes"].items()}
    return options


def run_artifact(profile: SshProfile, fmt, files: list[Path], modules: list[str], bench_inputs, eval_inputs=None, *,
                 warmup: int, runs: int, min_time_s: float = 0.0, threads: int = 1, rounds: int = 1,
                 options: dict | None = None, log=None, connection: Connection | None = None,
                 clocks: dict | None = None) -> RemoteRun:
    """Copy the runner, the format's session, an artifact and its inputs to the device, run it
    there, read the result back, remove the copy.

    Args:
        profile: the device.
        fmt: the format-table row of the artifact.
        files: the artifact's files; the first is the one the runtime opens.
        modules: runtime modules to try on the device, in order.
        bench_inputs, eval_inputs, warmup, runs, min_time_s, threads, rounds, options: see
            ``edgekit.targets.job.job_files``.
        log: where to say what is copied where.
        connection: the transport (default: ssh to the profile's device).
        clocks: the job's clocks settings (``SshTarget.clock_settings``).

    Returns:
        The latencies, outputs, runtime and environment of the device.

    Raises:
        DeviceError: with a one-line reason; the temporary folder on the device is removed.
    """
    payload = jobs.job_files(fmt, files, modules, bench_inputs, eval_inputs, warmup=warmup, runs=runs,
                             min_time_s=min_time_s, threads=threads, rounds=rounds, options=options, clocks=clocks)
    result = run_payload(profile, payload, files[0].name, log=log, connection=connection)
    remote_dir = result.pop("remote_dir")
    from edgekit.targets.runner import decode_array

    return RemoteRun(
        runtime=result["runtime"], settings=result["settings"], input_shape=result["input_shape"],
        latencies_ms=result["latencies_ms"], rounds_ms=result.get("rounds_ms"), environment=result["environment"], remote_dir=remote_dir,
        clocks=result.get("clocks"),
        outputs=decode_array(result["outputs"]) if result.get("outputs") else None,
    )
