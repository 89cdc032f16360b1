"""Quiet builds: the chatter of native libraries goes into the run's build.log, not the terminal.

TensorFlow's C++ logging (``I0000 ... cudart_stub.cc``, ``E0000 ... failed call to cuInit:
... CUDA error`` on a machine without a GPU), absl's ``WARNING: All log messages before
absl::InitializeLog()``, the TFLite converter's ``fully_quantize: 0, inference_type: 6``,
LiteRT's ``Created TensorFlow Lite XNNPACK delegate``, NNCF's progress bars and tf2onnx's
logging write to file descriptors 1 and 2 from C++ or from Python handlers made at import
time; ``TF_CPP_MIN_LOG_LEVEL`` silences only part of it. So ``captured`` points descriptors 1
and 2 themselves at a log file for the duration of a build: whatever writes there, in this
process or in a worker or probe process started meanwhile (they inherit the descriptors), and
whatever Python prints through ``sys.stdout`` / ``sys.stderr`` (warnings, logging handlers,
progress bars), lands in the file. edgekit's own lines go to the terminal through the stream
the context yields (``Capture.terminal``), on the descriptors saved before the redirection.

The file is written as ``build.log.tmp`` in the run directory and renamed ``build.log`` at the
end, once the build has made the folder a run directory (a folder the build refused keeps no
log). An executor shared by several builds (``edgekit build`` of many recipes, or
``--executor``) outlives each build's log: its workers write into ``workers.log`` beside the
run directories instead (``descriptors_to``, and ``LocalPool(output=)``); none of it reaches
the terminal.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

#: the run directory's log of what the libraries printed during the build (pipeline.RUN_FILES)
BUILD_LOG = "build.log"

#: the capture in force (at most one: descriptors 1 and 2 are the process's)
_ACTIVE: list = []

#: Python loggers of the libraries a build drives: their records go to build.log even when a
#: handler of theirs holds a stream object made before the capture started
LIBRARY_LOGGERS = ("absl", "tensorflow", "tf_keras", "h5py", "tf2onnx", "onnx", "onnxruntime", "nncf", "openvino",
                   "py.warnings")


@dataclass
class Capture:
    """What ``captured`` yields.

    Attributes:
        terminal: a text stream on the terminal's stderr (the descriptor saved before the
            redirection; or ``sys.stderr`` itself where it never wrote to fd 2, as under
            click's CliRunner or in a notebook); edgekit's progress and log lines go here.
        terminal_out: the same for stdout.
        path: the temporary log file (moved to ``run_dir/build.log`` at the end); None when
            ``verbose`` (nothing is captured: the libraries print live).
    """

    terminal: TextIO
    terminal_out: TextIO
    path: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_terminal(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log`` called with ``sys.stdout`` / ``sys.stderr`` pointing at the terminal, so a
        given ``print`` or ``click.echo`` still reaches the user (its ``step`` kept)."""
        if self.path is None:
            return log

        def wrapped(message: str) -> None:
            with self._lock, contextlib.redirect_stdout(self.terminal_out), contextlib.redirect_stderr(self.terminal):
                log(message)

        for name in ("step", "end"):  # the progress bars' calls (edgekit.progress)
            if hasattr(log, name):
                setattr(wrapped, name, getattr(log, name))
        return wrapped


@contextlib.contextmanager
def captured(run_dir: Path, verbose: bool = False) -> Iterator[Capture]:
    """Send file descriptors 1 and 2 (and ``sys.stdout``, ``sys.stderr``, the libraries' Python
    loggers) into a log file while the block runs; ``run_dir/build.log`` holds it afterwards.

    ``verbose``: capture nothing (the libraries print live, as before); an earlier run's
    build.log is removed, since it would describe another build.
    """
    run_dir = Path(run_dir)
    if _ACTIVE:  # inside another capture (a build within a build): its log and terminal serve
        yield _ACTIVE[-1]
        return
    if verbose:
        _remove_old(run_dir)
        yield Capture(sys.stderr, sys.stdout)
        return
    handle, path = _open_log(run_dir)
    try:
        with _redirected(handle, path) as capture:
            yield capture
    finally:
        _keep(path, run_dir)


@contextlib.contextmanager
def captured_file(path: Path | None, verbose: bool = False) -> Iterator[Capture]:
    """``captured`` for work without a run directory (``edgekit bench`` on files): the libraries'
    output goes into ``path`` (kept), or into a temporary file removed at the end when ``path``
    is None; ``verbose`` captures nothing."""
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    if verbose:
        yield Capture(sys.stderr, sys.stdout)
        return
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "wb")  # noqa: SIM115 - closed by _redirected
    else:
        handle = tempfile.NamedTemporaryFile(prefix="edgekit-", suffix=".log", delete=False)  # noqa: SIM115
    try:
        with _redirected(handle, Path(handle.name)) as capture:
            yield capture
    finally:
        if path is None:
            Path(handle.name).unlink(missing_ok=True)


@contextlib.contextmanager
def _redirected(handle, path: Path) -> Iterator[Capture]:
    """Descriptors 1 and 2, and the libraries' loggers, into ``handle`` (closed at the end)."""
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal_out = _terminal(sys.stdout, 1, saved_out)
    terminal = _terminal(sys.stderr, 2, saved_err)
    loggers = _library_loggers(handle)
    try:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        _ACTIVE.append(Capture(terminal, terminal_out, path))
        yield _ACTIVE[-1]
    finally:
        _ACTIVE.clear()
        for stream in (sys.stdout, sys.stderr, terminal, terminal_out):
            _flush(stream)
        for stream in {id(s): s for s in (terminal, terminal_out) if s not in (sys.stdout, sys.stderr)}.values():
            stream.close()  # our wrappers on the saved descriptors (closefd=False: the fds close below)
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for logger, handler in loggers:
            logger.removeHandler(handler)
        if loggers:
            loggers[0][1].stream.close()  # one handler, one stream, shared by every logger
        for fd in (saved_out, saved_err):
            os.close(fd)
        handle.close()


def _terminal(stream: TextIO, fd: int, saved: int) -> TextIO:
    """Where edgekit's own lines go: ``stream`` itself when it does not write to ``fd`` (click's
    CliRunner, a notebook's output stream: the redirection does not touch it), else a stream on
    the descriptor saved before the redirection."""
    try:
        bound = stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        bound = False
    return _text_stream(saved, stream) if bound else stream


def _open_log(run_dir: Path):
    """The log file while the build runs: ``run_dir/build.log.tmp`` (a run directory's check
    ignores ``*.tmp``; renamed in place at the end, so a worker process that outlives the build,
    shared by the next recipe's, still writes into this build.log), else a temporary file."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / (BUILD_LOG + ".tmp")
        return open(path, "wb"), path  # open for the whole build
    except OSError:
        handle = tempfile.NamedTemporaryFile(prefix="edgekit-build-", suffix=".log", delete=False)  # noqa: SIM115
        return handle, Path(handle.name)


def _text_stream(fd: int, like: TextIO) -> TextIO:
    """A line-buffered text stream on ``fd`` (one of the saved descriptors), encoded like ``like``."""
    encoding = getattr(like, "encoding", None) or "utf-8"
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=encoding, errors="backslashreplace",
                            line_buffering=True, write_through=True)


def _library_loggers(handle) -> list:
    """A handler on each library logger that writes into the log file: loggers whose own handler
    is bound to a stream object (absl's, tf2onnx's) still reach fd 2, but one that has none
    would otherwise fall back to ``logging.lastResort``; records are never shown twice, since
    nothing else of theirs reaches the terminal."""
    import logging

    stream = io.TextIOWrapper(io.FileIO(handle.fileno(), "w", closefd=False), encoding="utf-8",
                              errors="backslashreplace", line_buffering=True, write_through=True)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
    attached = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not logger.handlers:
            logger.addHandler(handler)
            attached.append((logger, handler))
    return attached


def _keep(path: Path, run_dir: Path) -> None:
    """Move the log into ``run_dir`` when the build made it a run directory, else drop it."""
    from edgekit.pipeline.build import RUN_FILES

    try:
        names = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
        names.discard(path.name)
        if names & {"results.json", "manifest.json", "recipe.yaml", "artifacts"} and names <= RUN_FILES \
                or names & {"results.json", "manifest.json"}:
            if path.parent == run_dir:
                os.replace(path, run_dir / BUILD_LOG)
            else:
                shutil.move(str(path), str(run_dir / BUILD_LOG))
    except OSError:
        pass  # a read-only or vanished run directory: the log is lost, the build's result is not
    finally:
        path.unlink(missing_ok=True)


def _remove_old(run_dir: Path) -> None:
    try:
        (run_dir / BUILD_LOG).unlink(missing_ok=True)
    except OSError:
        pass


def _flush(stream) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


#: where the workers of an executor shared by several builds write what their libraries print
WORKERS_LOG = "workers.log"


@contextlib.contextmanager
def descriptors_to(path: Path | None) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``path`` (appended) while the block runs, and nothing
    else: for starting worker processes that outlive one build (they inherit the descriptors),
    so their libraries' chatter goes to ``path``, not the terminal. None: leave them as they are."""
    if path is None:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            _flush(stream)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, fd):
            os.close(descriptor)


def say(message: str) -> None:
    """One of edgekit's own lines on the terminal's stderr, also while a capture is in force (for
    a log that outlives one build, such as a shared executor's ``worker started`` lines)."""
    stream = _ACTIVE[-1].terminal if _ACTIVE else sys.stderr
    print(message, file=stream, flush=True)
