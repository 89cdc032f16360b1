"""Build progress: live rich progress bars on a terminal, plain lines in CI logs.

The pipeline reports through one callable, ``log(message)``; long loops also call
``log.step(what, done, total)`` when the logger has it. On a terminal every message scrolls
above the bars (each training epoch's loss and metrics too, as in piped output), and each kind of
work has a bar of its own that counts only that work: ``training base`` epochs, ``fine-tuning
pruned80`` epochs, ``converting + evaluating`` variants done of those planned, ``timing cpu``
row-rounds timed of those planned. A bar goes when its count is complete; the top line shows the
latest message, without a count of its own. Elsewhere (CI, pipes, ``CI`` set) every message is
one plain line and steps print nothing extra.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TextIO


class BuildLog:
    def __init__(self, stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.live = live if live is not None else (self.stream.isatty() and not os.environ.get("CI"))
        self._progress = None
        self._bars: dict[str, int] = {}
        # steps come from worker threads too (a variant finished in a worker process)
        self._lock = threading.Lock()
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            console = Console(file=self.stream, force_terminal=True)
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(), console=console,
                                      transient=True)
            self._status = self._progress.add_task("starting", total=None, count="")
            self._progress.start()

    def __call__(self, message: str) -> None:
        if self._progress is None:
            print(message, file=self.stream, flush=True)
            return
        self._progress.console.print(message, markup=False, highlight=False)
        if not message.startswith(" "):  # an epoch line belongs to its bar; a stage line is the status
            self._progress.update(self._status, description=message.strip().split(":")[0])

    def step(self, what: str, done: int, total: int | None) -> None:
        """``what`` has ``done`` of ``total`` finished (None: an unknown total, no count shown)."""
        if self._progress is None:
            return
        with self._lock:
            bar = self._bars.get(what)
            if bar is None:
                bar = self._bars[what] = self._progress.add_task(what, total=total, count="")
            self._progress.update(bar, completed=done, total=total, count=f"{done}/{total}" if total else "")
            if total and done >= total:  # complete: the bar goes, the next work gets its own
                self._progress.remove_task(bar)
                del self._bars[what]

    def end(self, what: str) -> None:
        """``what`` is over before its count was full (early stopping): its bar goes."""
        if self._progress is None:
            return
        with self._lock:
            bar = self._bars.pop(what, None)
            if bar is not None:
                self._progress.remove_task(bar)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def step(log, what: str, done: int, total: int | None) -> None:
    """Report progress through ``log`` when it can show it (plain callables cannot)."""
    if hasattr(log, "step"):
        log.step(what, done, total)


def end(log, what: str) -> None:
    """Tell ``log`` that ``what`` is over, its count full or not (training stopped early)."""
    if hasattr(log, "end"):
        log.end(what)


class Counter:
    """A count of finished work reported through ``log`` as it grows, from any thread:
    ``Counter(log, "converting + evaluating", 11).add()`` each time one is done."""

    def __init__(self, log, what: str, total: int):
        self.log, self.what, self.total, self.done = log, what, total, 0
        self._lock = threading.Lock()

    def add(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            step(self.log, self.what, self.done, max(self.total, self.done))
