"""The Dask executor: a build's tasks on a Dask distributed cluster (``--executor dask://HOST:PORT``).

The same tasks as the local pool (convert + evaluate one variant; benchmark a device's rows)
become Dask tasks; this module is imported only when ``--executor dask://...`` is asked for, and
``pip install 'keras-edgekit[dask]'`` brings Dask. ``dask://local`` starts a cluster of worker
processes on this machine for the build (``$EDGEKIT_WORKERS`` of them, default 2).

What each task does on its worker (``_on_worker``): one edgekit task at a time per worker process
(TensorFlow's converters are not thread-safe, whatever ``--nthreads`` the worker has), the
build's worker set-up once per process, then the task inside its locks (``edgekit.locks``: the
worker host's lock, and for a device the cluster-wide ``distributed.Lock`` of that device). Its
log lines and stages come back as Dask events on a topic of the build's own.

Faults: a task whose worker dies is retried once (on another worker, as the dead one is gone),
then failed with ``WorkerDied`` naming the last worker; a build started with ``dask://local``
sets the scheduler's own retries to none, and a scheduler started by hand should be too
(``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0``, see docs/scale-out.md), or it retries a dying task
itself before edgekit sees a death. A lost scheduler fails every task with ``SchedulerLost``;
the build then writes its partial results as on Ctrl-C.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import InputError, SchedulerLost, TaskFailed, WorkerDied, one_line
from edgekit.executors import base
from edgekit.locks import Hold

#: seconds to wait for the scheduler to answer when connecting
CONNECT_S = 10
#: attempts of a task whose worker died (the first and one retry)
TRIES = 2


def make(address: str, initializer: Callable | None, initargs: tuple, log: Callable[[str], None] | None,
         workers: int | None, output: Path | None) -> DaskExecutor:
    """The ``dask`` scheme (``edgekit.executors.schemes``): ``dask://HOST:PORT``, a running
    scheduler, or ``dask://local``, a cluster of ``workers`` worker processes made here. Its
    workers inherit this process's descriptors whatever ``output`` says."""
    # None or 0: the cluster's own default (a dask://local cluster has no in-process mode)
    return DaskExecutor(address, initializer, initargs, log, workers=workers or None)


def check(address: str) -> None:
    """Fail before a build writes anything where no scheduler can answer
    (``edgekit.executors.schemes.check``), saying why. A host name that does not resolve fails at
    once (Dask's own connect would try it again until ``CONNECT_S`` and only say it timed out); a
    port that refuses is tried again until ``CONNECT_S`` has passed, as Dask does, since a
    scheduler started just before the build may not listen yet.

    Raises:
        InputError: one line naming the address, the reason and the fix.
    """
    import socket
    import time
    from urllib.parse import urlsplit

    if address == "local":
        return
    url = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = url.hostname, url.port
    except ValueError as exc:  # a port that is no number, or out of range
        raise _no_scheduler(address, str(exc)) from None
    if url.scheme != "tcp" or not host or port is None:  # tls://, a default port: Dask's connect decides
        return
    deadline = time.monotonic() + CONNECT_S
    while True:
        try:
            socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())).close()
            return
        except socket.gaierror as exc:
            raise _no_scheduler(address, f"the host name {host!r} does not resolve: {exc.strerror or exc}") from None
        except OSError as exc:  # refused, unreachable, no answer in time
            why = exc.strerror or ("no answer" if isinstance(exc, TimeoutError) else type(exc).__name__)
            if time.monotonic() + 0.2 >= deadline:
                raise _no_scheduler(address, f"{host}:{port}: {why} for {CONNECT_S:g} s") from None
            time.sleep(0.2)


def _no_scheduler(address: str, why: str) -> InputError:
    return InputError(f"--executor dask://{address}: no Dask scheduler answered ({why}); start one (`dask scheduler`, "
                      "workers with `dask worker HOST:8786 --nthreads 1`) or check the address")


class DaskExecutor(base.Executor):
    """Tasks on a Dask cluster: at ``address`` (``HOST:PORT``), or ``local`` (one made here).

    Raises:
        InputError: no scheduler answered at ``address``.
    """

    remote = True
    shared_scratch = True  # the workers read the build's files: they go under the (shared) cache
    whole_builds = True  # training and the Keras baseline go to a worker too, not only conversions

    def __init__(self, address: str, initializer: Callable | None = None, initargs: tuple = (),
                 log: Callable[[str], None] | None = None, workers: int | None = None):
        super().__init__()
        import dask
        from distributed import Client, LocalCluster

        # A worker's death or a lost scheduler is edgekit's one line, not Dask's log records and
        # tracebacks (Dask sets levels per logger: each of its loggers is turned down).
        for name in list(logging.root.manager.loggerDict):
            if name.split(".")[0] in ("distributed", "tornado", "asyncio"):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        for name in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        self.initializer, self.initargs = initializer, initargs
        self.log = log or (lambda line: None)
        self.spawned = 0
        self._cluster = None
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.lost: str | None = None  # why the scheduler went away, once it did
        self.topic = f"edgekit-{uuid.uuid4().hex[:12]}"
        try:
            if address == "local":
                dask.config.set({"distributed.scheduler.allowed-failures": 0})  # edgekit retries, once
                self._cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.CRITICAL)
                self.client = Client(self._cluster, timeout=CONNECT_S)
                self.spawned = workers or 2
            else:
                self.client = Client(f"tcp://{address}" if "://" not in address else address, timeout=CONNECT_S)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, or something that is no Dask scheduler
            self.close()
            raise _no_scheduler(address, one_line(exc, 160)) from None
        self.address = self.client.scheduler.address
        self.client.subscribe_topic(self.topic, self._on_event)
        count = len(self.client.scheduler_info().get("workers", {}))
        self.log(f"[dask] scheduler {self.address}, {count} worker(s)"
                 + ("" if count else ": none yet, tasks wait for the first worker to join"))

    def submit(self, fn: Callable, *args: Any, on_message: base.OnMessage | None = None,
               hold: Hold | None = None) -> Future:
        """Run ``fn(*args)`` on a worker; returns the (concurrent.futures) future of its value."""
        with self._lock:
            if self._closed or self.lost:
                raise RuntimeError("the Dask executor is closed")
            task = _Task(uuid.uuid4().hex[:12], fn, args, on_message, hold or Hold(task=fn.__name__, kind="task"))
            self._tasks[task.id] = task
        self._send(task)
        return task.future

    def slots(self) -> int:
        """The cluster's workers now (at least 1: tasks wait for the first to join)."""
        try:
            return max(1, len(self.client.scheduler_info().get("workers", {})))
        except Exception:  # noqa: BLE001 - a scheduler that does not answer: one at a time
            return 1

    def start(self) -> None:
        """The cluster's workers are running already."""

    def close(self, now: bool = False) -> None:
        """Cancel what is still queued or running, disconnect, and stop a ``dask://local`` cluster."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = [t.dask for t in self._tasks.values() if t.dask is not None and not t.future.done()]
        client = getattr(self, "client", None)
        if client is not None:
            try:
                if pending and not self.lost:
                    client.cancel(pending, force=True)
                client.close(timeout=5)
            except Exception:  # noqa: BLE001 - a client whose scheduler is gone cannot say goodbye
                pass
        if self._cluster is not None:
            try:
                self._cluster.close(timeout=10)
            except Exception:  # noqa: BLE001
                pass
        for task in self._tasks.values():
            if not task.future.done():
                task.future.cancel()

    # -- the client's side of a task --

    def _send(self, task: _Task) -> None:
        task.tries += 1
        task.dask = self.client.submit(_on_worker, self.topic, task.id, self.initializer, self.initargs, task.hold,
                                       task.fn, task.args, key=f"edgekit-{task.hold.kind}-{task.id}-{task.tries}",
                                       pure=False)
        task.dask.add_done_callback(lambda done: self._finished(task, done))  # runs in a thread of its own

    def _finished(self, task: _Task, done) -> None:
        from distributed.scheduler import KilledWorker

        if task.future.done():
            return
        try:
            if done.status == "finished":
                self.settle(task.future, *done.result())
                return
            if done.status == "cancelled":  # by close(), or by the client when the scheduler is gone
                self._gone(task, "connection lost")
                return
            exc = done.exception()
        except Exception as error:  # noqa: BLE001 - reading the outcome failed: the scheduler is gone
            self._gone(task, one_line(error, 120))
            return
        if isinstance(exc, KilledWorker):
            worker = getattr(getattr(exc, "last_worker", None), "address", None) or "?"
            if task.tries < TRIES and not self._closed:
                self.log(f"[dask] worker {worker} died while running {task.hold.task}; retrying it once on another worker")
                self._send(task)
                return
            task.future.set_exception(WorkerDied(None, task.stage, worker=worker, tries=task.tries))
            return
        task.future.set_exception(TaskFailed(f"on the Dask cluster: {one_line(exc)}"))

    def _gone(self, task: _Task, why: str) -> None:
        """``task`` has no outcome: cancelled by ``close``, or its scheduler went away."""
        if self._closed:
            task.future.cancel()
            return
        with self._lock:
            first = self.lost is None
            self.lost = self.lost or f"the Dask scheduler {self.address} went away ({why})"
        if first:
            self.log(f"[dask] {self.lost}")
        task.future.set_exception(SchedulerLost(self.lost))

    def _on_event(self, event) -> None:
        _, message = event
        task = self._tasks.get(message.get("task"))
        if task is None:
            return
        kind, text = message.get("kind"), message.get("text")
        if kind == "stage":
            task.stage = text
        base.relay(task.on_message, kind, text)


class _Task:
    def __init__(self, task_id: str, fn: Callable, args: tuple, on_message, hold: Hold):
        self.id, self.fn, self.args, self.on_message, self.hold = task_id, fn, args, on_message, hold
        self.future: Future = Future()
        self.dask = None
        self.tries = 0
        self.stage: str | None = None


# -- the worker's side --

#: one edgekit task at a time per worker process, whatever its thread count
_ONE_AT_A_TIME = threading.Lock()
#: the set-ups (initializer, initargs) this worker process has run
_PREPARED: set = set()


def _on_worker(topic: str, task_id: str, initializer, initargs: tuple, hold: Hold, fn: Callable, args: tuple):
    """A task on a Dask worker: set up once, then ``fn(*args)`` inside its locks; returns
    (value or what it raised, the hold's record). Lines sent with ``executor.report`` become
    events on ``topic``."""
    from distributed import get_worker

    worker = get_worker()

    def send(kind: str, text: str) -> None:
        worker.log_event(topic, {"task": task_id, "kind": kind, "text": text})

    with _ONE_AT_A_TIME:
        base.listener = send
        try:
            if initializer is not None and (initializer, initargs) not in _PREPARED:
                initializer(*initargs)
                _PREPARED.add((initializer, initargs))
            return base.run_held(hold, fn, args, device_lock=_device_lock, holder=worker.address)
        finally:
            base.listener = None


def _device_lock(name: str):
    """The cluster-wide lock of one device (several machines' workers may reach it)."""
    from distributed import Lock

    return Lock(f"edgekit-device-{name}")


def scratch_folder(cache_root: Path) -> Path:
    """Where a build writes the files its Dask tasks read: under the cache, which every worker sees."""
    return Path(cache_root) / "scratch"
