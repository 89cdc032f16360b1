"""No process a build starts outlives it, whatever ends the build (SIGKILL included).

Every process edgekit starts on this machine (the pool's workers, the probes, the TFLite Micro
runs, the GPU runner and the native benchmark tools of ``edgekit verify``) asks the kernel, as
it starts, for SIGKILL when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``): a build killed
with SIGKILL then leaves no orphan busy on the CPU. Measured before: after SIGKILL of the main
process, a TFLite Micro run and a probe started ahead kept running for their whole duration.

The parent's pid travels in ``$EDGEKIT_PARENT_PID`` (``child_env``); the child calls ``hold``
first thing, which also exits at once when the parent died before the kernel was asked. A
binary edgekit cannot change gets the same through ``preexec``. The kernel's "parent" is the
thread that started the child: start children from a thread that outlives them (the main
thread, the pool's dispatcher, a thread that waits for the child), as every caller here does.
Elsewhere than Linux, nothing happens (the pool's workers still poll for their parent).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable

#: the environment variable that carries the parent's pid to a child
ENV = "EDGEKIT_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with this process named as the parent."""
    return {**(os.environ if env is None else env), ENV: str(os.getpid())}


def hold(parent_pid: int | None = None) -> None:
    """In a child: die when the parent dies (``parent_pid``, default ``$EDGEKIT_PARENT_PID``;
    nothing when neither is set: the module run by hand). Exits at once (status 1) when the
    parent is gone already."""
    pid = parent_pid or _env_pid()
    os.environ.pop(ENV, None)  # this process's own children get their own parent (child_env)
    if not pid:
        return
    _die_with_parent()
    if os.getppid() != pid:  # the parent died before the request reached the kernel
        os._exit(1)


def preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess`` that makes a program die with this process (a
    binary that cannot call ``hold``); None where the kernel has no parent-death signal."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    prctl = _prctl()  # resolved here: the forked child only calls it

    def in_child() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return in_child


def _env_pid() -> int:
    text = os.environ.get(ENV, "")
    return int(text) if text.isdigit() else 0


def _die_with_parent() -> None:
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _prctl():
    """libc's prctl, or None (not Linux, or no libc to call)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
