"""Who may use a machine's CPU, and a device, while something is being timed.

A benchmark on a machine's CPU must never overlap other work on that machine, and a device
runs one benchmark at a time. Every task of a build holds a lock for as long as it runs:

- the host lock, per machine: work that uses the CPU (training, conversion, evaluation, and a
  device benchmark's ssh side) holds it *shared*; a benchmark timed on this machine holds it
  *exclusive*, so it waits for the shared holders to finish and no new one starts meanwhile;
- a device lock, per device name: held by the task that benchmarks on that device. A task for
  a pool of devices names its members (``Hold.candidates``) and holds the first that is free,
  waiting for one when all are busy; ``held_device()`` tells the task which it got.

The locks are ``flock`` files in ``$EDGEKIT_LOCK_DIR`` (default ``<tmp>/edgekit-locks``), so they
hold between every edgekit process on the machine: the worker processes of a build, the Dask
workers that run there, and other builds (two CI jobs on one runner). The kernel drops a lock
when its holder dies, so a killed process never leaves one behind. On a Dask cluster the device
lock is the cluster's own (``distributed.Lock``: one device is reached from several machines);
see ``edgekit.executor_dask``.

Shared holders are not made to queue behind a waiting exclusive one: a build holds the host
lock shared while it trains, and its own conversions then take it shared again in the workers;
with writer preference, a second build's waiting benchmark would deadlock the two. An exclusive
holder waits until the shared ones of every build have ended (each build ends its shared phase
when its own benchmarks begin).

Each hold is recorded (``Hold.record``: host, holder, mode, start and end as Unix time) and the
build writes the records into results.json ``tasks``; tests check that no exclusive interval
overlaps another interval of the same host or device.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

#: how often a waiting holder says that it still waits (seconds)
WAIT_NOTICE_S = 30.0


def lock_dir() -> Path:
    return Path(os.environ.get("EDGEKIT_LOCK_DIR") or Path(tempfile.gettempdir()) / "edgekit-locks")


def host_name() -> str:
    return socket.gethostname()


@dataclass
class Hold:
    """What one task holds: ``mode`` "shared" or "exclusive" on this host, and optionally a device."""

    task: str
    kind: str  # build | convert | bench
    mode: str = "shared"
    device: str | None = None
    #: filled in while held: host, holder, start, end, waited_s
    record: dict = field(default_factory=dict)
    #: devices of a pool, any one of which will do: the first free one is held (and becomes ``device``)
    candidates: list[str] | None = None


#: the device the current thread's task holds (``held_device``)
_held = threading.local()


def held_device() -> str | None:
    """The device the task running in this thread holds (for a pool: the member it got), or None."""
    return getattr(_held, "device", None)


#: how often a task for a pool whose members are all busy tries them again (seconds)
POLL_S = 0.2


class _FileLock:
    """A device's lock file on this machine, with the interface of ``distributed.Lock``."""

    def __init__(self, name: str):
        self.name, self.fd = name, None

    def acquire(self, blocking: bool = True) -> bool:
        self.fd = _open(f"device-{_safe(self.name)}.lock")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops its flock
            self.fd = None


def _one_of(candidates: list[str], device_lock, log) -> tuple[str, Callable[[], None]]:
    """Hold the first free device of ``candidates`` (trying all every POLL_S seconds while all are
    busy); returns its name and how to release it."""
    make = device_lock or _FileLock
    started, said = time.monotonic(), 0.0
    while True:
        for name in candidates:
            lock = make(name)
            if lock.acquire(blocking=False):
                return name, lock.release
        waited = time.monotonic() - started
        if log is not None and (said == 0.0 or waited - said >= WAIT_NOTICE_S):
            log(f"[lock] every device of {', '.join(candidates)} is busy; waiting for the first free one")
            said = waited or 1e-9
        time.sleep(POLL_S)


def _open(name: str) -> int:
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o1777)  # every user's builds share the machine, so they share its locks
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)
    return fd


def _flock(fd: int, operation: int, what: str, log: Callable[[str], None] | None) -> float:
    """Take ``operation`` on ``fd``, saying every WAIT_NOTICE_S seconds that it waits; returns the
    seconds waited."""
    started = time.monotonic()
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return 0.0
    except BlockingIOError:
        pass
    if log is not None:
        log(f"[lock] waiting for {what} (other edgekit work on this machine holds it)")
    done = threading.Event()

    def notice() -> None:
        while not done.wait(WAIT_NOTICE_S):
            if log is not None:
                log(f"[lock] still waiting for {what} after {time.monotonic() - started:.0f} s")

    threading.Thread(target=notice, daemon=True).start()
    try:
        fcntl.flock(fd, operation)
    finally:
        done.set()
    return time.monotonic() - started


@contextlib.contextmanager
def holding(hold: Hold, log: Callable[[str], None] | None = None,
            device_lock: Callable[[str], contextlib.AbstractContextManager] | None = None) -> Iterator[Hold]:
    """Hold this host's lock in ``hold.mode`` (and ``hold.device``'s lock) for the block.

    Args:
        hold: what to hold; its ``record`` is filled in (start and end are taken inside the locks).
        log: receives a line when the locks are not free at once.
        device_lock: makes the device's lock (a cluster-wide one on Dask); default: a lock file here.
    """
    waited = 0.0
    with contextlib.ExitStack() as stack:
        if hold.candidates:
            began = time.monotonic()
            hold.device, release = _one_of(list(hold.candidates), device_lock, log)
            stack.callback(release)
            waited += time.monotonic() - began
        elif hold.device is not None:
            if device_lock is not None:
                began = time.monotonic()
                stack.enter_context(device_lock(hold.device))
                waited += time.monotonic() - began
            else:
                fd = _open(f"device-{_safe(hold.device)}.lock")
                stack.callback(os.close, fd)
                waited += _flock(fd, fcntl.LOCK_EX, f"device {hold.device}", log)
        host = _open("host.lock")
        stack.callback(os.close, host)
        mode = fcntl.LOCK_EX if hold.mode == "exclusive" else fcntl.LOCK_SH
        waited += _flock(host, mode, f"this machine's CPU ({hold.mode})", log)
        hold.record = {"task": hold.task, "kind": hold.kind, "host": host_name(), "holder": f"pid {os.getpid()}",
                       "mode": hold.mode, "device": hold.device, "start": time.time(), "waited_s": round(waited, 3)}
        before, _held.device = held_device(), hold.device
        try:
            yield hold
        finally:
            _held.device = before
            hold.record["end"] = time.time()
            fcntl.flock(host, fcntl.LOCK_UN)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def overlaps(records: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of records that break the rules: an exclusive hold overlapping any other hold of
    the same host, or two holds of one device overlapping. Empty when the timing was honest."""
    broken = []
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            if not (a["start"] < b["end"] and b["start"] < a["end"]):
                continue
            same_host = a["host"] == b["host"] and "exclusive" in (a["mode"], b["mode"])
            same_device = a.get("device") is not None and a.get("device") == b.get("device")
            if same_host or same_device:
                broken.append((a, b))
    return broken
