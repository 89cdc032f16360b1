"""Pools of like ssh devices: one target, several devices.

A pool is either one profile with ``hosts:`` (its members share the rest of the profile; a
member may name its own port, user, python, work_dir, sysfs_root or timeout_s) or several single-host
profiles with the same ``pool: NAME`` (then NAME is the target; their runtimes must agree).
A recipe names the pool as a target; its row ids say the pool (``tflite-int8@shelf``) and each
row's ``device`` says which member measured it.

The pool splits its rows into jobs (``split``: one per format and model, so that the rows a
ratio pairs, a model's int8 and fp32 in one runtime, are timed in the same rounds on one
device) and the bench stage's fleet (``edgekit.bench.fleet``) runs each job on a free member,
holding that member's device lock, checking each member's health once per build, retrying,
moving a job off a failing member and quarantining one that keeps failing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgekit.errors import DeviceProfileError
from edgekit.targets.base import Measurement, Target


def member_names(profile) -> list[str]:
    """The names of a ``hosts:`` profile's members: each one's ``name``, else its host, else
    host:port where two members share a host.

    Raises:
        ValueError: two members of one name.
    """
    from edgekit.targets.ssh import Member

    members = [Member(host=m) if isinstance(m, str) else m for m in profile.hosts or []]
    hosts = [m.host for m in members]
    names = [m.name or (m.host if hosts.count(m.host) == 1 else f"{m.host}:{m.port or profile.port}") for m in members]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"hosts: two members are called {repeated[0]!r}; give each a name: or a port of its own")
    return names


def member_profiles(profile) -> list:
    """One single-host SshProfile per member of a ``hosts:`` profile, named as ``member_names``."""
    from edgekit.targets.ssh import Member

    out = []
    for name, member in zip(member_names(profile), profile.hosts):
        member = Member(host=member) if isinstance(member, str) else member
        fields = {key: value for key, value in member.model_dump(exclude={"name"}).items() if value is not None}
        single = profile.model_copy(update={**fields, "hosts": None})
        single._name, single._path = name, profile.path
        out.append(single)
    return out


def find_pools(dirs: list[Path]) -> dict[str, list[str]]:
    """Pool name -> the names of the profiles in ``dirs`` that say ``pool:`` NAME (read without
    validating: a broken profile is reported when its pool is used)."""
    import yaml

    from edgekit.targets.profiles import find_profiles

    pools: dict[str, list[str]] = {}
    for name, path in find_profiles(dirs).items():
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(document, dict) and isinstance(document.get("pool"), str):
            pools.setdefault(document["pool"], []).append(name)
    return pools


def pool_of_profiles(name: str, profile_names: list[str], dirs: list[Path],
                     log: Callable[[str], None] | None = None) -> PoolTarget:
    """The target of the profiles that say ``pool: NAME``.

    Raises:
        DeviceProfileError: a member profile is invalid, of another kind, or lists other runtimes.
    """
    from edgekit.targets.profiles import get_profile
    from edgekit.targets.ssh import SshProfile, SshTarget

    profiles = [get_profile(member, dirs) for member in profile_names]
    for profile in profiles:
        if not isinstance(profile, SshProfile) or profile.hosts is not None:
            raise DeviceProfileError(f"{profile.path}: pool: {name}: a pool's profiles must each be one ssh device "
                                     f"(kind ssh, host:), this one is {'a pool itself' if profile.kind == 'ssh' else profile.kind}")
        if sorted(profile.runtimes) != sorted(profiles[0].runtimes):
            raise DeviceProfileError(f"{profile.path}: pool: {name}: its runtimes ({', '.join(profile.runtimes)}) differ "
                                     f"from {profiles[0].name}'s ({', '.join(profiles[0].runtimes)}); a pool's devices "
                                     "must be alike: list the same runtimes, or use separate targets")
    return PoolTarget(name, [SshTarget(profile, log) for profile in profiles], log)


class PoolTarget(Target):
    """Several like ssh devices under one target name (see the module docstring)."""

    kind = "pool"
    evaluates = True
    interleaves = True
    times_here = False
    is_pool = True

    def __init__(self, name: str, members: list, log: Callable[[str], None] | None = None):
        self.name, self.log, self._members = name, log, list(members)
        #: what the last build's fleet decided: {"members": {name: {...}}, ...} (results.json targets)
        self.fleet: dict | None = None
        self._environments: dict[str, dict] = {}

    def members(self) -> list:
        return list(self._members)

    def member(self, name: str):
        """The member target called ``name``."""
        return next(m for m in self._members if m.name == name)

    def supports(self, variant) -> bool:
        return self._members[0].supports(variant)

    def unsupported_reason(self, variant) -> str:
        return self._members[0].unsupported_reason(variant)

    def precheck(self, variant) -> Measurement | None:
        # the members share one profile's runtimes (or profiles whose runtimes agree)
        return self._members[0].precheck(variant, f"pool {self.name}")

    def split(self, variants) -> list[list[int]]:
        """The rows' jobs: indices of ``variants`` grouped by (format, model), in order."""
        groups: dict[tuple, list[int]] = {}
        for i, variant in enumerate(variants):
            groups.setdefault((getattr(variant, "format", None), getattr(variant, "model", None)), []).append(i)
        return list(groups.values())

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        return self.measure_all([variant], spec, samples, eval_inputs)[0]

    def measure_all(self, variants, spec, samples, eval_inputs=None, seed: int = 0, sample_sets=None) -> list[Measurement]:
        """The rows on the pool's free members, as a build's fleet runs them (in threads here)."""
        from edgekit.bench import fleet

        measurements, _ = fleet.run(self, variants, spec, samples, eval_inputs, seed, None, self.log, sample_sets)
        return measurements

    def portable(self) -> PoolTarget:
        clone = super().portable()
        clone._members = [member.portable() for member in self._members]
        return clone

    def note_environment(self, device: str, environment: dict | None) -> None:
        """Keep a member's environment block (what its runner probed) for ``environment``."""
        if environment:
            self._environments[device] = environment

    def environment(self) -> dict:
        members = {m.name: self._environments.get(m.name) or m.environment() for m in self._members}
        return {"pool": self.name, "members": members, **({"fleet": self.fleet} if self.fleet else {})}

    def cache_identity(self) -> dict:
        # Any member may time a row: a measurement is reused while the pool is the same.
        return {"pool": self.name, "members": [m.cache_identity() for m in self._members]}
