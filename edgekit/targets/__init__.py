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
the profile's file name. Nothing outside this package branches on target names: it asks the
target objects (``evaluates``, ``uses_host_session``, ``is_reference``, ``order``) or the
helpers here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from edgekit.targets.base import Measurement, Target
from edgekit.targets.profiles import search_dirs

__all__ = ["KINDS", "Measurement", "Target", "builtin_names", "in_order", "kind", "profile_kinds",
           "reference_names", "resolve", "search_dirs"]


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


def builtin_names() -> tuple[str, ...]:
    """Target names that need no profile (cpu, gpu); a device profile cannot take them."""
    return tuple(name for name, (_, builtin) in KINDS.items() if builtin)


def profile_kinds() -> dict[str, type[Target]]:
    """The kinds a device profile may name in ``kind:``, with their classes."""
    return {name: kind(name) for name, (_, builtin) in KINDS.items() if not builtin}


def reference_names() -> tuple[str, ...]:
    """Built-in targets whose Keras fp32 row, when timed, is the speedup reference (gpu)."""
    return tuple(name for name in builtin_names() if kind(name).is_reference)


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
