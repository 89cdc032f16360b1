"""Ctrl-C that a library swallowed is still Ctrl-C.

A SIGINT that lands while a native extension initialises (pybind11 turns the pending
KeyboardInterrupt into "ImportError: initialization failed") or inside a library's own
``except Exception`` comes back as an ordinary error, which a stage would record as a failed
row and go on. During a build, the handler below also remembers that SIGINT arrived, and every
place that turns an exception into a failed row asks ``reraise_if_interrupted()`` first.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_seen = False


def _handler(signum, frame) -> None:
    global _seen
    _seen = True
    raise KeyboardInterrupt


@contextmanager
def watching() -> Iterator[None]:
    """Remember every SIGINT while the block runs (main thread only; elsewhere a no-op)."""
    global _seen
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    _seen = False
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _seen = False


def reraise_if_interrupted() -> None:
    """Raise KeyboardInterrupt when a SIGINT arrived during the build (whatever became of it)."""
    if _seen:
        raise KeyboardInterrupt
