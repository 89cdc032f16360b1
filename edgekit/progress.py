"""Build progress: a live rich progress bar on a terminal, plain lines in CI logs.

The pipeline reports through one callable, ``log(message)``; long loops (training epochs,
benchmark rows) also call ``log.step(what, done, total)`` when the logger has it. On a
terminal the bar shows the current step and the other lines scroll above it; elsewhere
(CI, pipes, ``CI`` set) every message is one plain line and steps print nothing extra.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


class BuildLog:
    def __init__(self, stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.live = live if live is not None else (self.stream.isatty() and not os.environ.get("CI"))
        self._progress = None
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=self.stream, force_terminal=True)
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=console, transient=True)
            self._task = self._progress.add_task("starting", total=None)
            self._progress.start()

    def __call__(self, message: str) -> None:
        if self._progress is None:
            print(message, file=self.stream, flush=True)
            return
        if not message.startswith("  epoch"):  # epochs show in the bar, not as scrolling lines
            self._progress.console.print(message, markup=False, highlight=False)
        self._progress.update(self._task, description=message.strip().split(":")[0])

    def step(self, what: str, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=what, completed=done, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def step(log, what: str, done: int, total: int) -> None:
    """Report progress through ``log`` when it can show it (plain callables cannot)."""
    if hasattr(log, "step"):
        log.step(what, done, total)
