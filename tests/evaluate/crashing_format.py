"""Test-only formats for the worker processes: each misbehaves natively, as real converters do
(the TFLite int8 converter segfaults on a Keras 3 LSTM).

- ``crash``: fp32 conversion reads address 0 (SIGSEGV); int8 converts, but opening its runtime
  session aborts (SIGABRT), so evaluation crashes.
- ``slow``: conversion sleeps, long enough to press Ctrl-C during it.

Importing this module registers nothing (the rows would leak into every other test's recipes);
run it as ``python -m tests.evaluate.crashing_format build ...``, which registers both rows and
then runs the edgekit CLI. The workers receive the rows with their tasks.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

from edgekit.formats import Format

MODULE = "tests.evaluate.crashing_format"  # not __name__: run with -m, that is "__main__"


def convert_crash(model, path: Path, precision: str, x_calib, options: dict, prequantized: bool = False) -> dict:
    if precision == "fp32":
        ctypes.string_at(0)  # a NULL read: the process dies with SIGSEGV
    Path(path).write_bytes(b"crash-int8")
    return {"converter": "crash"}


def open_crash(path: Path, threads: int, options: dict):
    os.abort()  # SIGABRT, while the variant is evaluated


def convert_slow(model, path: Path, precision: str, x_calib, options: dict, prequantized: bool = False) -> dict:
    time.sleep(120)
    raise RuntimeError("the slow format never finishes")


CRASH = Format(name="crash", suffix=".crash", precisions=("fp32", "int8"), converter=f"{MODULE}:convert_crash",
               runtime=f"{MODULE}:open_crash", runtime_packages=(), description="test only: crashes its worker",
               label="Crash")
SLOW = Format(name="slow", suffix=".slow", precisions=("fp32", "int8"), converter=f"{MODULE}:convert_slow",
              runtime=f"{MODULE}:open_crash", runtime_packages=(), description="test only: converts for minutes",
              label="Slow")


if __name__ == "__main__":
    from edgekit.cli import cli
    from edgekit.formats import register

    register(CRASH)
    register(SLOW)
    cli(prog_name="edgekit")
