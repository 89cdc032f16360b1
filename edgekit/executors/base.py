"""The executor seam's common ground: what a task may send back, and what every executor shares.

A task is a module-level function and picklable arguments, run somewhere (a local worker
process, the calling process, a Dask worker). While it runs it can send lines back with
``report``; each executor points ``listener`` at its own way back (a pipe, the caller's
``on_message``, a Dask event). A task submitted with a ``locks.Hold`` runs inside the host and
device locks (``run_held``), and its record comes back with its value.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from edgekit.errors import TaskFailed, one_line
from edgekit.locks import Hold, holding

#: (kind, text) -> None; kinds: "log" (a line for the build log), "stage" (what the task is doing),
#: "progress" ("done/total" of the task's own work, for the build's progress bar)
OnMessage = Callable[[str, str], None]
#: the kinds of message a task sends while it runs (its answer comes as another kind)
MESSAGES = ("log", "stage", "progress")

#: in a process that runs a task: where ``report`` sends its messages (None: nobody listens)
listener: OnMessage | None = None


def report(kind: str, text: str) -> None:
    """From inside a task: send ``(kind, text)`` to the parent's ``on_message`` (dropped when
    nobody listens). Kind "stage" also names the stage a crash is blamed on."""
    if listener is not None:
        listener(kind, text)


class Executor:
    """What every executor shares: the record of each held task, and ``hold``."""

    #: tasks share the calling process's state (its TensorFlow threads, for one)
    in_process = False
    #: tasks run in other processes of this machine (a local pool)
    same_machine = False
    #: tasks may run on other machines (a cluster): what they need travels with them or is on
    #: shared paths
    remote = False
    #: the files a build hands its tasks go under the (shared) cache rather than a local temp folder
    shared_scratch = False
    #: a build's own work (training, fine-tuning, the Keras baseline; for several recipes or a
    #: search's trials, their conversions too) travels to the workers as one task per build, and
    #: only the timing of this machine's rows stays in the build's process (``edgekit.pipeline.whole_build``)
    whole_builds = False

    def __init__(self) -> None:
        #: ``locks.Hold.record`` of every task run with a hold, in the order they ended
        self.records: list[dict] = []
        self._records_lock = threading.Lock()

    def slots(self) -> int:
        """How many tasks this executor runs at once (a search keeps that many trials in flight)."""
        return 1

    def keep(self, record: dict) -> None:
        with self._records_lock:
            self.records.append(record)

    @contextlib.contextmanager
    def hold(self, hold: Hold, log: Callable[[str], None] | None = None) -> Iterator[Hold]:
        """Hold ``hold``'s locks in the calling process for the block (its work runs here, not in
        a task: training, or the timing of this machine's rows); the record is kept."""
        try:
            with holding(hold, log, device_lock=self.device_lock) as held:
                yield held
        finally:
            if hold.record:
                self.keep(hold.record)

    #: makes a device's lock; None: a lock file on this machine (``edgekit.locks``)
    device_lock: Callable | None = None

    def _unwrap(self, inner: Future) -> Future:
        """The future of a held task's value: ``run_held`` answers (value, record)."""
        outer: Future = Future()

        def done(future: Future) -> None:
            if future.cancelled():
                outer.cancel()
                return
            exc = future.exception()
            if exc is not None:
                outer.set_exception(exc)
                return
            self.settle(outer, *future.result())

        inner.add_done_callback(done)
        return outer

    def settle(self, future: Future, value: Any, record: dict) -> None:
        """Keep a held task's record and give ``future`` its value (what ``run_held`` answered)."""
        self.keep(record)
        if isinstance(value, Raised):
            future.set_exception(TaskFailed(value.text))
        else:
            future.set_result(value)


def relay(on_message: OnMessage | None, kind: str, text: str) -> None:
    """Hand a task's message to its ``on_message``; a broken log must not lose the task."""
    if on_message is not None:
        try:
            on_message(kind, text)
        except Exception:  # noqa: BLE001
            pass


@dataclass
class Raised:
    """What a held task raised, sent back with its record (the record must not be lost with it)."""

    text: str


def run_held(hold: Hold, fn: Callable, args: tuple, device_lock: Callable | None = None,
             holder: str | None = None) -> tuple[Any, dict]:
    """In a worker: ``fn(*args)`` inside ``hold``'s locks; returns (its value, or what it raised, and
    the hold's record). ``holder`` names the worker in the record (default: its pid)."""
    try:
        with holding(hold, lambda line: report("log", line), device_lock=device_lock):
            if holder is not None:
                hold.record["holder"] = holder
            value = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the task fails; its record still goes back
        value = Raised(one_line(exc))
    return value, hold.record


