"""Where tasks run: a small pool of local worker processes (the default), or the calling process.

A task is a module-level function and picklable arguments; ``submit`` returns a
``concurrent.futures.Future`` of its result. ``LocalPool`` runs each task in a worker process
started with "spawn" (TensorFlow is not fork-safe) that keeps its imports between tasks, so a
native crash (a segfault, an abort, the OOM killer) costs that one task: its future fails with
``WorkerDied`` (the exit signal and the stage the task had reported), the dead worker is
dropped, and the next task gets a fresh one. Workers start when the first task is submitted
(or at ``start()``), never earlier, so a build that finds everything in its cache starts none.
They ignore Ctrl-C (the parent stops them, ``close``), and exit by themselves when the parent
dies. While it runs, a task can send lines back with ``report``; the parent hands them to the
``on_message`` it gave with the task.

The seam: an executor is one class with ``submit``, ``start``, ``close`` and ``hold`` (the
``Executor`` base gives the last) and a ``make`` function, one entry of the scheme table
(``edgekit.executors.schemes``): ``LocalPool`` here (``--executor local``), and ``InProcess``,
which runs tasks in the calling process (``EDGEKIT_WORKERS=0``, for a debugger, without the
crash isolation). A task submitted with a ``Hold`` runs inside the host and device locks of
``edgekit.locks`` wherever it runs, and its record (host, start, end) is kept in ``records``,
which the build writes into results.json ``tasks``.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing import connection
from pathlib import Path
from typing import Any, Callable

from edgekit import lifeline
from edgekit.errors import TaskFailed, WorkerDied, one_line
from edgekit.executors import base
from edgekit.executors.base import MESSAGES, Executor, OnMessage, relay, run_held
from edgekit.locks import Hold

#: how long a worker gets to exit after it is asked to (then it is killed)
STOP_S = 5.0


@dataclass
class _Task:
    future: Future
    payload: bytes
    on_message: OnMessage | None


@dataclass
class _Worker:
    process: Any
    conn: Any
    task: _Task | None = None
    stage: str | None = None
    #: messages of the current task that arrived with the result (kept in order)
    pending: list = field(default_factory=list)


class LocalPool(Executor):
    """Up to ``size`` spawned worker processes that run one task at a time each.

    Args:
        size: the most workers alive at once.
        initializer: called once in each new worker (imports, thread settings), before its
            first task; must be importable by name (it is pickled).
        initargs: its arguments.
        log: receives one line when a worker starts and when one dies.
        output: a file each worker points its descriptors 1 and 2 at (appended); None: the
            ones it inherits (a build's log while the build captures them).
    """

    same_machine = True

    def __init__(self, size: int = 1, initializer: Callable | None = None, initargs: tuple = (),
                 log: Callable[[str], None] | None = None, output: Path | None = None):
        super().__init__()
        self.size = max(1, size)
        self.output = output
        self.initializer, self.initargs = initializer, initargs
        self.log = log or (lambda line: None)
        #: worker processes started so far (a fully cached build starts none)
        self.spawned = 0
        #: exit codes of the workers that died while running a task
        self.deaths: list[int | None] = []
        self._context = multiprocessing.get_context("spawn")
        self._queue: collections.deque[_Task] = collections.deque()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = self._context.Pipe(duplex=False)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._kill = False
        self._warm = False

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, fn: Callable, *args: Any, on_message: OnMessage | None = None, hold: Hold | None = None) -> Future:
        """Queue ``fn(*args)`` for the next free worker; returns the future of its result. With a
        ``hold``, the task runs inside its locks (``edgekit.locks``) and its record is kept.

        Raises:
            pickle.PicklingError (or TypeError): an argument cannot travel to a worker.
        """
        call = (run_held, (hold, fn, args)) if hold is not None else (fn, args)
        payload = pickle.dumps(call)  # here, so a bad argument fails in the caller, not in a worker
        task = _Task(Future(), payload, on_message)
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            self._queue.append(task)
        self._run_dispatcher()
        return self._unwrap(task.future) if hold is not None else task.future

    def start(self) -> None:
        """Start the workers now rather than at the first task (they import while the caller
        does other work)."""
        with self._lock:
            self._warm = True
        self._run_dispatcher()

    def close(self, now: bool = False) -> None:
        """Stop every worker and fail the tasks not finished. Idle workers are asked to exit; a busy
        one gets ``STOP_S`` seconds, then it is killed (``now``: at once, for Ctrl-C). Callers
        wait for their tasks before closing. Safe to call twice."""
        with self._lock:
            if self._closed and self._thread is None:
                return
            self._closed, self._kill = True, now
        self._wake()
        thread = self._thread
        if thread is not None:
            thread.join()
            self._thread = None
        for task in self._queue:
            task.future.cancel()
        self._queue.clear()

    # -- the dispatcher thread: owns the workers; the caller's thread only queues and waits --

    def _run_dispatcher(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._dispatch, name="edgekit-executor", daemon=True)
                self._thread.start()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"!")
        except OSError:
            pass

    def _dispatch(self) -> None:
        try:
            while True:
                with self._lock:
                    closed = self._closed
                if closed:
                    break
                self._assign()
                ready = connection.wait([self._wake_r] + [w.conn for w in self._workers]
                                        + [w.process.sentinel for w in self._workers])
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for worker in list(self._workers):
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._service(worker)
        except BaseException as exc:  # noqa: BLE001 - a waiting caller must never hang on a bug here
            self._fail_all(exc)
        finally:
            self._stop_workers()

    def _assign(self) -> None:
        """Hand queued tasks to idle workers, starting workers up to ``size`` as needed."""
        with self._lock:
            if self._warm:
                while len(self._workers) < self.size:
                    self._spawn()
                self._warm = False
            while self._queue:
                idle = next((w for w in self._workers if w.task is None), None)
                if idle is None and len(self._workers) < self.size:
                    idle = self._spawn()
                if idle is None:
                    break
                task = self._queue.popleft()
                if not task.future.set_running_or_notify_cancel():
                    continue  # cancelled while queued
                idle.task, idle.stage = task, None
                try:
                    idle.conn.send_bytes(task.payload)
                except OSError:
                    pass  # it died meanwhile: its sentinel says so, and the task fails with its exit code

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, os.getpid(), self.initializer, self.initargs,
                                                                   self.output),
                                        name=f"edgekit-worker-{self.spawned + 1}", daemon=True)
        process.start()
        child.close()
        self.spawned += 1
        self.log(f"[worker] started process {process.pid} (converts and evaluates variants)")
        worker = _Worker(process, parent)
        self._workers.append(worker)
        return worker

    def _service(self, worker: _Worker) -> None:
        """Read what ``worker`` sent; a worker whose pipe closed or whose process ended is dead."""
        dead = False
        try:
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv())
        except (EOFError, OSError):
            dead = True
        except Exception as exc:  # noqa: BLE001 - an answer that does not unpickle here fails its task
            if worker.task is not None:
                worker.task.future.set_exception(TaskFailed(f"the worker's answer could not be read: {one_line(exc)}"))
                worker.task = None
        if dead or not worker.process.is_alive():
            self._bury(worker)

    def _handle(self, worker: _Worker, message: tuple) -> None:
        kind, body = message
        task = worker.task
        if task is None:
            return
        if kind in MESSAGES:
            if kind == "stage":
                worker.stage = body
            relay(task.on_message, kind, body)
            return
        worker.task = None
        if kind == "done":
            task.future.set_result(body)
        elif kind == "interrupt":  # the task raised KeyboardInterrupt: the caller sees one too
            task.future.set_exception(KeyboardInterrupt())
        else:
            task.future.set_exception(TaskFailed(body))

    def _bury(self, worker: _Worker) -> None:
        worker.process.join(timeout=STOP_S)
        self._workers.remove(worker)
        worker.conn.close()
        if worker.task is not None:
            died = WorkerDied(worker.process.exitcode, worker.stage)
            self.deaths.append(worker.process.exitcode)
            self.log(f"[worker] process {worker.process.pid} {died.how()}; the next task gets a new one")
            worker.task.future.set_exception(died)
            worker.task = None

    def _fail_all(self, exc: BaseException) -> None:
        error = TaskFailed(f"the worker pool failed: {one_line(exc)}")
        for task in [w.task for w in self._workers if w.task] + list(self._queue):
            if not task.future.done():
                task.future.set_exception(error)
        self._queue.clear()

    def _stop_workers(self) -> None:
        """Idle workers are asked to exit; busy ones too, unless ``close(now=True)``: then they
        are terminated. Any still alive after STOP_S is killed, so none outlives the pool."""
        for worker in self._workers:
            if worker.task is not None and self._kill:
                worker.process.terminate()
            else:
                try:
                    worker.conn.send_bytes(b"")
                except OSError:
                    pass
        deadline = time.monotonic() + STOP_S
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if worker.task is not None and not worker.task.future.done():
                worker.task.future.set_exception(TaskFailed("the worker pool was closed before the task finished"))
            worker.conn.close()
        self._workers.clear()


def make(address: str, initializer: Callable | None, initargs: tuple, log: Callable[[str], None] | None,
         workers: int | None, output: Path | None) -> Executor:
    """The ``local`` scheme (``edgekit.executors.schemes``): ``LocalPool`` of ``workers`` worker
    processes (default 1), ``InProcess`` for 0."""
    if workers == 0:
        return InProcess(initializer, initargs)
    # One worker by default: measured on 2 cores, a second one made digits_cnn --fresh no faster
    # (the parent trains while the worker converts) and costs ~1 GB and a TensorFlow import.
    return LocalPool(1 if workers is None else workers, initializer, initargs, log, output=output)


class InProcess(Executor):
    """Runs each task at once in the calling process (no isolation: a crash ends the build).
    For debuggers and profilers: ``EDGEKIT_WORKERS=0``."""

    spawned = 0
    in_process = True

    def __init__(self, initializer: Callable | None = None, initargs: tuple = ()):
        super().__init__()
        self.initializer, self.initargs = initializer, initargs
        self._ready = False

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, fn: Callable, *args: Any, on_message: OnMessage | None = None, hold: Hold | None = None) -> Future:
        future: Future = Future()
        self.start()
        base.listener = on_message
        try:
            if hold is not None:
                self.settle(future, *run_held(hold, fn, args))
            else:
                future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - as a worker would: the task fails, the caller goes on
            future.set_exception(TaskFailed(one_line(exc)))
        finally:
            base.listener = None
        return future

    def start(self) -> None:
        if not self._ready and self.initializer is not None:
            self.initializer(*self.initargs)
        self._ready = True

    def close(self, now: bool = False) -> None:
        pass


def _worker_main(conn, parent_pid: int, initializer: Callable | None, initargs: tuple,
                 output: Path | None = None) -> None:
    """A worker's life: set up once, then run tasks until told to stop (an empty message), the
    pipe closes, or the parent goes away."""
    lifeline.hold(parent_pid)  # killed with the parent (SIGKILL included), not a second later
    if output is not None:  # before the set-up: TensorFlow's import prints
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    # Ctrl-C reaches the whole process group; the parent decides, and stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    setup_error = None
    if initializer is not None:
        try:
            initializer(*initargs)
        except Exception as exc:  # noqa: BLE001 - reported with each task instead
            setup_error = f"the worker could not start: {one_line(exc)}"
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            message = b""
        if not message:
            # Exit at once: an interpreter holding TensorFlow, onnxruntime and OpenVINO takes a
            # second to tear down, and the build waits for its workers before timing anything.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (AttributeError, OSError, ValueError):
                    pass
            os._exit(0)
        base.listener = lambda kind, text: conn.send((kind, text))
        try:
            if setup_error:
                raise RuntimeError(setup_error)
            fn, args = pickle.loads(message)
            reply = ("done", fn(*args))
        except KeyboardInterrupt:
            reply = ("interrupt", None)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit fails one task, not the worker
            reply = ("error", one_line(exc))
        finally:
            base.listener = None
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - the result would not pickle
            conn.send(("error", f"the result could not be sent back: {one_line(exc)}"))


def _exit_with_parent(parent_pid: int) -> None:
    """Exit when the parent is gone (killed with SIGKILL, say): no worker outlives its build."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)
