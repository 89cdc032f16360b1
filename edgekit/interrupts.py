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
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_seen = False
_forwarded = False  # an unraisable Ctrl-C was sent on to the main thread (once per build)


def _handler(signum, frame) -> None:
    global _seen
    _seen = True
    raise KeyboardInterrupt


@contextmanager
def watching() -> Iterator[None]:
    """Remember every SIGINT while the block runs (main thread only; elsewhere a no-op)."""
    global _seen, _forwarded
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous, previous_hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    _seen = _forwarded = False
    signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = _unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        _seen = False


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


def reraise_if_interrupted() -> None:
    """Raise KeyboardInterrupt when a SIGINT arrived during the build (whatever became of it)."""
    if _seen:
        raise KeyboardInterrupt
