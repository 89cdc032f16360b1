"""The executor of a build, from ``--executor``: each scheme names the module that makes it."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

from edgekit.errors import InputError
from edgekit.executors.base import Executor  # noqa: F401 - the seam's names
from edgekit.executors.local import InProcess, LocalPool

#: what ``--executor`` (or ``$EDGEKIT_EXECUTOR``) may say
EXECUTOR_FORMS = "local, or dask://HOST:PORT (a running Dask scheduler), or dask://local (a Dask cluster on this machine)"


def make_executor(initializer: Callable | None = None, initargs: tuple = (),
                  log: Callable[[str], None] | None = None, spec: str | None = None,
                  output: Path | None = None) -> Executor:
    """The executor of a build, from ``spec`` (``--executor``; default ``$EDGEKIT_EXECUTOR``, else
    "local"): ``LocalPool`` of ``$EDGEKIT_WORKERS`` workers (default 1), ``InProcess`` when that
    is 0, or a ``DaskExecutor`` for ``dask://...``.

    ``output``: a file the local pool's worker processes point descriptors 1 and 2 at (what their
    libraries print), for an executor that outlives one build's log; None: inherited from this
    process (a ``dask://local`` cluster's workers always inherit: start it inside
    ``quiet.descriptors_to``).

    Raises:
        InputError: an unknown spec, ``EDGEKIT_WORKERS`` not a whole number from 0 to 64, Dask
            not installed, or no scheduler at the address.
    """
    spec = (spec or os.environ.get("EDGEKIT_EXECUTOR") or "local").strip()
    size = _worker_count()
    if spec.startswith("dask://"):
        try:
            executor_dask = importlib.import_module("edgekit.executors.dask_cluster")  # imports Dask
        except ImportError:
            raise InputError(f"--executor {spec} needs Dask distributed, which is not installed: "
                             "pip install 'keras-edgekit[dask]' (or use --executor local)") from None
        # None or 0: the cluster's own default (a dask://local cluster has no in-process mode)
        return executor_dask.DaskExecutor(spec[len("dask://"):], initializer, initargs, log, workers=size or None)
    if spec != "local":
        raise InputError(f"--executor: expected {EXECUTOR_FORMS}; received {spec!r}")
    if size == 0:
        return InProcess(initializer, initargs)
    # One worker by default: measured on 2 cores, a second one made digits_cnn --fresh no faster
    # (the parent trains while the worker converts) and costs ~1 GB and a TensorFlow import.
    return LocalPool(1 if size is None else size, initializer, initargs, log, output=output)


def _worker_count() -> int | None:
    """``$EDGEKIT_WORKERS``: worker processes of the local pool (0: none), or of ``dask://local``;
    None when it is not set (each executor has its own default)."""
    text = os.environ.get("EDGEKIT_WORKERS", "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > 64:
        raise InputError(f"EDGEKIT_WORKERS: expected a whole number from 0 to 64 (0: no worker processes), received {text!r}")
    return int(text)
