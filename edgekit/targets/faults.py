"""What a device may do wrong, and what edgekit does about it: retries with backoff, and the
health check of a pool member (also what `edgekit devices check` calls a problem).

A step that failed for a reason worth another try (``DeviceError.transient``: a refused,
dropped or timed-out connection, a step past its timeout) is tried again up to the profile's
``retries`` times, after ``backoff_s``, then twice that, and so on: bounded, and every failed try
is kept for the rows (results.json ``retries``). A refused host key or login, a missing Python or
a runtime that does not import fails at once: trying again cannot help. Quarantine (a member left
out for the rest of a build) is decided by the bench stage's fleet, ``edgekit.bench.fleet``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edgekit.errors import DeviceError

#: megabytes
MB = 1_000_000


def with_retries(profile, call: Callable[[], Any], log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[Any, list[dict]]:
    """``call()``, tried again after transient DeviceErrors as the profile says.

    Returns:
        (what ``call`` returned, the failed tries before it: ``{"device", "error", "backoff_s"}`` each).

    Raises:
        DeviceError: the last error, once the tries are spent or at once for a lasting one; its
            ``tries`` lists every failed try, itself included.
    """
    tries: list[dict] = []
    for attempt in range(profile.retries + 1):
        try:
            return call(), tries
        except DeviceError as exc:
            last = attempt == profile.retries or not exc.transient
            backoff = 0.0 if last else profile.backoff_s * 2 ** attempt
            tries.append({"device": profile.name, "error": str(exc), "backoff_s": backoff})
            if last:
                exc.tries = tries
                raise
            if log is not None:
                log(f"[device] {profile.name}: {exc}; try {attempt + 2} of {profile.retries + 1} in {backoff:g} s")
            sleep(backoff)
    raise AssertionError("unreachable")  # the loop returns or raises


def health_problems(profile, info: dict) -> list[str]:
    """What keeps a device that answered the probe (``ssh.probe``: ``info``) from running jobs:
    a runtime the profile lists that does not import, a work_dir it cannot write, less free disk
    there than ``min_free_mb``. Empty: healthy."""
    from edgekit.targets.ssh import runtime_names

    problems = []
    names = runtime_names()
    for runtime in profile.runtimes:
        state = (info.get("runtimes") or {}).get(names[runtime], {})
        if not state.get("ok"):
            problems.append(f"runtime {runtime} is listed in the profile but does not import with "
                            f"{info.get('python_executable')} ({state.get('error')}); install it there or remove it "
                            "from runtimes")
    work = info.get("work_dir") or {}
    if work.get("exists") and not work.get("writable"):
        problems.append(f"work_dir {profile.work_dir} is not writable for {profile.user or 'the login user'}")
    free = work.get("free_bytes")
    if isinstance(free, (int, float)) and free < profile.min_free_mb * MB:
        problems.append(f"work_dir {profile.work_dir} has {free / MB:.0f} MB free, less than min_free_mb "
                        f"{profile.min_free_mb:g}; free some space there or lower min_free_mb")
    return problems
