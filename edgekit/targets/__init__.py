"""Targets: where a variant is timed. One module per kind, listed once in KINDS below.

- ``cpu`` (targets/cpu.py): this machine, every variant, in the session it was evaluated with.
- ``gpu`` (targets/gpu.py): the fp32 baseline on a GPU, the speedup reference; skipped, with
  the reason, without one.
- ``ssh`` (targets/ssh.py): a device profile devices/NAME.yaml (targets/profiles.py) whose
  ``kind:`` is ssh (the default); the device runner (targets/runner.py) runs edgekit's own
  runtime sessions there.
- pools (targets/pool.py): a ssh profile with ``hosts:``, or the profiles that share ``pool:
  NAME``: like devices under one target name, each job on a free member (``edgekit.bench.fleet``).
- ``mcu`` (targets/mcu.py): a profile of ``kind: mcu`` (a microcontroller's RAM and flash); its
  full-integer TFLite rows run in TFLite Micro on this machine (targets/mcu_run.py), with the
  tensor arena, flash bytes, budgets and a C array of the model; latency is host time.
- ``ethos-u`` (targets/ethos_u.py): a profile of ``kind: ethos-u`` (an Arm Ethos-U NPU, its SRAM and
  flash); its full-integer TFLite rows are compiled by Arm's Vela (targets/vela.py): operators on
  the NPU and the CPU, SRAM and flash use, Vela's cycle estimate (never a latency), the compiled
  model and its C array. The C arrays of both kinds come from targets/c_source.py.

A kind is a ``Target`` subclass (targets/base.py). Built-in kinds are target names by
themselves (``targets: [cpu, gpu]``); the others are named by a profile's ``kind:`` and take
the profile's file name. A kind added from outside edgekit is one ``register`` call
(tests/contracts/test_extra_target.py adds one). Nothing outside this package branches on target
names or kinds: it asks the target objects (``evaluates``, ``uses_host_session``,
``probes_here``, ``times_here``, ``is_reference``, ``order``, ``offers``, ``check``) or the
helpers here; a format row says how its artifacts run (``Format.runs_with``), never where.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekit.targets.base import Measurement, Target
from edgekit.targets.profiles import search_dirs

__all__ = ["KINDS", "Measurement", "Target", "builtin_names", "host_session_names", "in_order", "kind",
           "kinds_running", "profile_kinds", "reference_names", "register", "registered", "resolve", "search_dirs",
           "unregister"]


#: kind -> (its Target class as "module:Class", built in: a target name by itself). Loaded
#: lazily: reading the table imports neither TensorFlow nor an ssh client.
KINDS: dict[str, tuple[str, bool]] = {
    "cpu": ("edgekit.targets.cpu:CpuTarget", True),
    "gpu": ("edgekit.targets.gpu:GpuTarget", True),
    "ssh": ("edgekit.targets.ssh:SshTarget", False),
    "mcu": ("edgekit.targets.mcu:McuTarget", False),
    "ethos-u": ("edgekit.targets.ethos_u:EthosUTarget", False),
}


def kind(name: str) -> type[Target]:
    """The Target class of a kind."""
    module, _, cls = KINDS[name][0].partition(":")
    return getattr(importlib.import_module(module), cls)


def register(name: str, target_class: str, builtin: bool = False) -> None:
    """Add (or replace) a target kind from outside edgekit: ``target_class`` is its ``Target``
    subclass as ``"module:Class"``; ``builtin``: a target name by itself (like cpu), else named
    by a device profile's ``kind:`` (its class's ``profile_model`` reads the profile).

    Raises:
        ValueError: a name a row id or a profile cannot carry, or a class that is no ``Target``
            of that kind.
    """
    if not name or not all(c.isalnum() or c in "-_" for c in name) or not name[0].isalpha():
        raise ValueError(f"target kind {name!r}: expected letters, digits, - and _, starting with a letter")
    previous = KINDS.get(name)
    KINDS[name] = (target_class, builtin)
    cls = kind(name)
    if not (isinstance(cls, type) and issubclass(cls, Target)) or cls.kind != name \
            or (not builtin and cls.profile_model is None):
        _restore(name, previous)
        raise ValueError(f"target kind {name!r}: {target_class} must be a Target subclass with kind = {name!r}"
                         + ("" if builtin else " and a profile_model"))


def unregister(name: str) -> None:
    """Remove a kind added by ``register`` (a test cleaning up after itself)."""
    KINDS.pop(name, None)


@contextmanager
def registered(name: str, target_class: str, builtin: bool = False) -> Iterator[None]:
    """``register`` for the duration of a ``with`` block, restoring the table after."""
    previous = KINDS.get(name)
    register(name, target_class, builtin)
    try:
        yield
    finally:
        _restore(name, previous)


def _restore(name: str, previous: tuple[str, bool] | None) -> None:
    if previous is None:
        KINDS.pop(name, None)
    else:
        KINDS[name] = previous


def builtin_names() -> tuple[str, ...]:
    """Target names that need no profile (cpu, gpu); a device profile cannot take them."""
    return tuple(name for name, (_, builtin) in KINDS.items() if builtin)


def profile_kinds() -> dict[str, type[Target]]:
    """The kinds a device profile may name in ``kind:``, with their classes."""
    return {name: kind(name) for name, (_, builtin) in KINDS.items() if not builtin}


def reference_names() -> tuple[str, ...]:
    """Built-in targets whose Keras fp32 row, when timed, is the speedup reference (gpu)."""
    return tuple(name for name in builtin_names() if kind(name).is_reference)


def host_session_names() -> tuple[str, ...]:
    """Built-in targets that time the session each variant was evaluated with, on this machine
    (``Target.uses_host_session``: cpu): the rows ``edgekit verify`` times again beside the
    runtimes' own tools, and the recipe table's columns."""
    return tuple(name for name in builtin_names() if kind(name).uses_host_session)


def kinds_running(fmt) -> tuple[str, ...]:
    """The target kinds that can time rows of ``fmt`` (a format-table row): those that offer one
    of its ``runs_with`` (``Target.offers``), in the table's order."""
    return tuple(name for name in KINDS if kind(name).runs_format(fmt))


def resolve(names: list[str], dirs: list[Path], log: Callable[[str], None] | None = None) -> dict[str, Target]:
    """Target objects for ``names``: a built-in kind, else the device profile of that name in
    ``dirs``, as an object of the profile's kind (a pool for a profile with ``hosts:``), else
    the pool of the profiles that say ``pool:`` that name. The order of ``names`` is kept.

    Raises:
        DeviceProfileError: no such profile, or an invalid one (of an unknown kind, say).
    """
    from edgekit.targets.pool import find_pools, pool_of_profiles
    from edgekit.targets.profiles import find_profiles, get_profile

    targets: dict[str, Target] = {}
    pools = None
    for name in names:
        if name in builtin_names():
            targets[name] = kind(name)(name)
            continue
        if name not in find_profiles(dirs) and name in (pools := pools if pools is not None else find_pools(dirs)):
            targets[name] = pool_of_profiles(name, pools[name], dirs, log)  # profiles that say pool: NAME
            continue
        profile = get_profile(name, dirs)
        targets[name] = kind(profile.kind).make(profile, log)
    return targets


def in_order(targets: dict[str, Target]) -> dict[str, Target]:
    """``targets`` sorted by their kind's ``order`` (cpu, then gpu, then devices), else as given:
    the first row of a build stays the Keras fp32 baseline on this machine."""
    return dict(sorted(targets.items(), key=lambda item: item[1].order))
