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
see ``edgekit.executors.dask_cluster``.

Shared holders are not made to queue behind a waiting exclusive one: a build holds the host
lock shared while it trains, and its own conversions then take it shared again in the workers;
with writer preference, a second build's waiting benchmark would deadlock the two. An exclusive
holder waits until the shared ones of every build have ended (each build ends its shared phase
when its own benchmarks begin).

Each hold is recorded (``Hold.record``: host, holder, mode, start and end as Unix time) and the
build writes the records into results.json ``tasks``; tests check that no exclusive interval
overlaps another interval of the same host or device.

Who holds a lock: each holder of a lock file writes ``holders/<lock>.<pid>.<n>.json`` (pid,
command, mode, task, since) beside it while it holds, so a build that waits says who it waits
for and since when (a flock cannot tell). A holder that died leaves its file behind; a waiter
skips (and removes) the files of dead pids.

Locks only around work: ``on_demand`` holds nothing until the work inside it first needs the
CPU (``take()``), so a stage whose output comes from the cache never waits for another build.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from edgekit.errors import shorten

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
        self.name, self.fd, self._said = name, None, None

    def acquire(self, blocking: bool = True) -> bool:
        self.fd = _open(_device_file(self.name))
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False
        self._said = _say_holder(_device_file(self.name), "exclusive", f"device {self.name}")
        return True

    def release(self) -> None:
        if self.fd is not None:
            _unsay(self._said)
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
            holders = "; ".join(f"{name}: {who}" for name in candidates
                                if (who := describe_holders(_device_file(name))))
            log(f"[lock] every device of {', '.join(candidates)} is busy"
                + (f" after {waited:.0f} s" if said else "") + "; waiting for the first free one"
                + (f" ({holders})" if holders else ""))
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


def _device_file(name: str) -> str:
    return f"device-{_safe(name)}.lock"


#: numbers this process's holder files apart (a process holds several locks, from several threads)
_holder_numbers = itertools.count()


def _command() -> str:
    """This process's command line, short (a spawned worker's ``sys.argv`` is its parent's)."""
    first = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if first in ("", "-c"):
        head = f"python {first}".strip()
    elif os.path.basename(first) == "__main__.py":  # python -m package
        head = f"python -m {os.path.basename(os.path.dirname(first))}"
    else:
        head = os.path.basename(first)
    words = [head, *sys.argv[1:]]
    text = " ".join(words)
    return shorten(text, 120)


def task_record(task: str, kind: str, mode: str | None, device: str | None, start: float, waited_s: float) -> dict:
    """What results.json ``tasks`` keeps of one piece of work: what it was, who did it where, how it
    held this machine (``mode`` None: it took no lock) and since when; ``end`` is added when it ends."""
    return {"task": task, "kind": kind, "host": host_name(), "holder": f"pid {os.getpid()}", "mode": mode,
            "device": device, "start": start, "waited_s": round(waited_s, 3)}


def _say_holder(lock_file: str, mode: str, task: str) -> Path | None:
    """Write who holds ``lock_file`` now (``holders/``); returns the file, to remove on release.
    A holder file that cannot be written costs the waiters' message, never the lock."""
    folder = lock_dir() / "holders"
    path = folder / f"{lock_file}.{os.getpid()}.{next(_holder_numbers)}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            folder.chmod(0o1777)
        path.write_text(json.dumps({"pid": os.getpid(), "command": _command(), "mode": mode, "task": task,
                                    "since": time.time()}))
        return path
    except OSError:
        return None


def _unsay(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def holders(lock_file: str) -> list[dict]:
    """Who holds ``lock_file`` (``host.lock``, ``device-pi.lock``) now, by the files its holders
    wrote, oldest first; the files of dead processes are removed."""
    found = []
    for path in (lock_dir() / "holders").glob(f"{lock_file}.*.json"):
        try:
            entry = json.loads(path.read_text())
            pid = int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if pid != os.getpid() and not _alive(pid):
            _unsay(path)
            continue
        found.append(entry)
    return sorted(found, key=lambda e: e.get("since") or 0.0)


def describe_holders(lock_file: str, shown: int = 3) -> str:
    """``held by pid 4242 (edgekit build recipes/b.yaml; bench cpu, exclusive since 11:02:03, 95 s)``,
    or "" when no holder is recorded."""
    found = holders(lock_file)
    if not found:
        return ""
    now = time.time()
    parts = []
    for entry in found[:shown]:
        since = entry.get("since") or now
        clock = time.strftime("%H:%M:%S", time.localtime(since))
        parts.append(f"pid {entry['pid']} ({entry.get('command', '?')}; {entry.get('task', '?')}, "
                     f"{entry.get('mode', '?')} since {clock}, {now - since:.0f} s)")
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return "held by " + ", ".join(parts) + more


def _flock(fd: int, operation: int, what: str, log: Callable[[str], None] | None, lock_file: str = "") -> float:
    """Take ``operation`` on ``fd``, saying at once and then every WAIT_NOTICE_S seconds that it
    waits, for how long and who holds ``lock_file``; returns the seconds waited."""
    started = time.monotonic()
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return 0.0
    except BlockingIOError:
        pass

    def who() -> str:
        return describe_holders(lock_file) or "other edgekit work on this machine holds it (no holder recorded)"

    if log is not None:
        log(f"[lock] waiting for {what}: {who()}")
    done = threading.Event()

    def notice() -> None:
        while not done.wait(WAIT_NOTICE_S):
            if log is not None:
                log(f"[lock] still waiting for {what} after {time.monotonic() - started:.0f} s: {who()}")

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
                fd = _open(_device_file(hold.device))
                stack.callback(os.close, fd)
                waited += _flock(fd, fcntl.LOCK_EX, f"device {hold.device}", log, _device_file(hold.device))
                stack.callback(_unsay, _say_holder(_device_file(hold.device), "exclusive", hold.task))
        host = _open("host.lock")
        stack.callback(os.close, host)
        mode = fcntl.LOCK_EX if hold.mode == "exclusive" else fcntl.LOCK_SH
        waited += _flock(host, mode, f"this machine's CPU ({hold.mode})", log, "host.lock")
        stack.callback(_unsay, _say_holder("host.lock", hold.mode, hold.task))
        hold.record = task_record(hold.task, hold.kind, hold.mode, hold.device, time.time(), waited)
        before, _held.device = held_device(), hold.device
        try:
            yield hold
        finally:
            _held.device = before
            hold.record["end"] = time.time()
            fcntl.flock(host, fcntl.LOCK_UN)


class OnDemand:
    """A hold taken at the first ``take()`` inside its block, never before: work that turns out
    to need no CPU (every output from the cache) waits for nobody. Released when the block ends;
    a ``take()`` after that holds nothing.

    Args:
        enter: makes the hold's context manager (``holding(hold, log)``, an executor's ``hold``).
        waits: receives ``(label, start, end)`` (``time.perf_counter`` seconds) of a take that
            had to wait for the locks: results.json ``waits``, kept apart from the stage times.
        label: what a wait is recorded under when ``take`` names nothing (the stage).
    """

    def __init__(self, enter: Callable[[], contextlib.AbstractContextManager], waits: list | None = None,
                 label: str = ""):
        self._enter, self._stack, self._mutex = enter, contextlib.ExitStack(), threading.RLock()
        self._waits, self._label, self._closed = waits, label, False
        #: the hold, once taken
        self.held: Hold | None = None

    def take(self, label: str | None = None) -> None:
        """Hold the locks now (waiting for them if need be), unless they are held already."""
        with self._mutex:
            if self.held is not None or self._closed:
                return
            started = time.perf_counter()
            self.held = self._stack.enter_context(self._enter())
            waited = float((self.held.record or {}).get("waited_s") or 0.0)
            if waited > 0 and self._waits is not None:
                self._waits.append((label or self._label, started, started + waited))

    def __enter__(self) -> "OnDemand":
        return self

    def __exit__(self, *exc) -> None:
        with self._mutex:
            self._closed = True
            self._stack.close()


def waited_within(waits: list, since: float, until: float) -> float:
    """Seconds of ``waits`` (``OnDemand``'s records) that fall between ``since`` and ``until``."""
    return sum(max(0.0, min(end, until) - max(start, since)) for _, start, end in waits)


def waits_by_label(waits: list) -> dict[str, float]:
    """results.json ``waits``: seconds waited per label (stage), rounded; empty when none."""
    out: dict[str, float] = {}
    for label, start, end in waits:
        out[label] = round(out.get(label, 0.0) + end - start, 2)
    return out


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
