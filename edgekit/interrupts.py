"""Ctrl-C that a library swallowed is still Ctrl-C.

A SIGINT that lands while a native extension initialises (pybind11 turns the pending
KeyboardInterrupt into "ImportError: initialization failed") or inside a library's own
``except Exception`` comes back as an ordinary error, which a stage would record as a failed
row and go on. During a build, the handler below also remembers that SIGINT arrived, and every
place that turns an exception into a failed row asks ``reraise_if_interrupted()`` first.

A SIGINT can also land inside a callback Python runs for itself (JAX, which TensorFlow imports
when it is installed, runs one after every garbage collection): the KeyboardInterrupt is then
"unraisable", printed as a traceback and dropped. The build's hook sends it on to the main
thread instead, silently, where it stops the build as any Ctrl-C does.

A second Ctrl-C while the build stops (within GRACE_S of the first, or while ``stopping``
writes the partial results) is noted and changes nothing: the results are written anyway.
"""

from __future__ import annotations

import _thread
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_seen = False
_forwarded = False  # an unraisable Ctrl-C was sent on to the main thread (once per build)
#: when the handler last raised (time.monotonic), inf while ``stopping``; None: not stopping
_raised_at: float | None = None
#: a further Ctrl-C this soon after the one that raised only counts: the build is on its way out
#: (through finally blocks) to ``stopping``, and a second KeyboardInterrupt there would cut the
#: partial results short (a double Ctrl-C 0.05-0.1 s apart lost results.json in 2 of 8 tries).
#: Later ones raise again: a library may have swallowed the first.
GRACE_S = 1.0


def _handler(signum, frame) -> None:
    global _seen, _raised_at
    _seen = True
    now = time.monotonic()
    if _raised_at is not None and now - _raised_at < GRACE_S:
        return
    _raised_at = now
    raise KeyboardInterrupt


@contextmanager
def watching() -> Iterator[None]:
    """Remember every SIGINT while the block runs (main thread only; elsewhere a no-op)."""
    global _seen, _forwarded
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _raised_at
    previous, previous_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    _seen = _forwarded = False
    _raised_at = None
    signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = _unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        _seen = False
        _raised_at = None


def _unraisable(unraisable) -> None:
    """A Ctrl-C raised where Python cannot raise it (a gc callback): raise it again in the main
    thread, once, after this hook has returned (raised in here, it would be one more unraisable
    traceback)."""
    global _forwarded
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        if not _forwarded:
            _forwarded = True
            # a bare thread: threading.Thread.start() would wait in this hook for it to run
            _thread.start_new_thread(_interrupt_soon, ())
        return
    sys.__unraisablehook__(unraisable)


def _interrupt_soon() -> None:
    time.sleep(0.05)  # the hook (and the callback that called it) has returned by then
    _thread.interrupt_main(signal.SIGINT)


@contextmanager
def stopping() -> Iterator[None]:
    """Inside ``watching``: while the block runs (the partial results of an interrupted build
    being written), a further Ctrl-C is noted and raises nothing."""
    global _raised_at
    _raised_at = math.inf
    try:
        yield
    finally:
        _raised_at = None


def reraise_if_interrupted() -> None:
    """Raise KeyboardInterrupt when a SIGINT arrived during the build (whatever became of it)."""
    if _seen:
        raise KeyboardInterrupt
