"""The executor of a build, from ``--executor``: a table of schemes, each naming the module that
makes its executor. A new executor is one module (an ``Executor`` and a ``make`` function) and
one entry here; nothing else of edgekit names it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekit.errors import InputError
from edgekit.executors.base import Executor


@dataclass(frozen=True)
class Scheme:
    """One kind of ``--executor`` value."""

    #: the module with ``make(address, initializer, initargs, log, workers, output) -> Executor``,
    #: and optionally ``check(address)``, which raises InputError, saying why, where ``make`` would fail
    module: str
    #: how ``--executor`` writes it (the error of an unknown value lists every scheme's)
    forms: str
    #: the value is ``SCHEME://ADDRESS`` (else the bare scheme name)
    address: bool = False
    #: packages the executor imports, and the optional extra of keras-edgekit that installs them
    needs: tuple[str, ...] = ()
    extra: str | None = None


#: ``--executor`` (or ``$EDGEKIT_EXECUTOR``): the scheme before ``://``, or the whole value
SCHEMES = {
    "local": Scheme("edgekit.executors.local", "local"),
    "dask": Scheme("edgekit.executors.dask_cluster",
                   "dask://HOST:PORT (a running Dask scheduler), or dask://local (a Dask cluster on this machine)",
                   address=True, needs=("distributed",), extra="dask"),
}


def executor_forms() -> str:
    """What ``--executor`` may say, every scheme's forms."""
    return ", or ".join(scheme.forms for scheme in SCHEMES.values())


def make_executor(initializer: Callable | None = None, initargs: tuple = (),
                  log: Callable[[str], None] | None = None, spec: str | None = None,
                  output: Path | None = None) -> Executor:
    """The executor of a build, from ``spec`` (``--executor``; default ``$EDGEKIT_EXECUTOR``, else
    "local"), made by its scheme's module (``SCHEMES``); ``$EDGEKIT_WORKERS`` is its number of
    worker processes (local: default 1, 0 runs tasks in this process).

    ``output``: a file the worker processes point descriptors 1 and 2 at (what their libraries
    print), for an executor that outlives one build's log; None: inherited from this process
    (start executors whose workers always inherit inside ``build_log.descriptors_to``).

    Raises:
        InputError: an unknown spec, ``EDGEKIT_WORKERS`` not a whole number from 0 to 64, a
            package the executor needs not installed, or nothing to connect to at the address.
    """
    scheme, address = _scheme_of(spec)
    workers = _worker_count()
    return importlib.import_module(scheme.module).make(address, initializer, initargs, log, workers, output)


def check(spec: str | None = None) -> None:
    """Fail before a build writes anything where ``make_executor`` would fail: an unknown spec, a
    package its scheme needs not installed, or an address that cannot answer (the scheme module's
    ``check(address)``, where it has one: for Dask a host name that does not resolve, at once, or
    a port that keeps refusing).

    Raises:
        InputError: what ``make_executor`` would raise, in one line.
    """
    scheme, address = _scheme_of(spec)
    checker = getattr(importlib.import_module(scheme.module), "check", None)
    if checker is not None:
        checker(address)


def _scheme_of(spec: str | None) -> tuple[Scheme, str]:
    """``spec`` (default ``$EDGEKIT_EXECUTOR``, else "local"): its scheme, once its packages are
    there, and its address."""
    spec = (spec or os.environ.get("EDGEKIT_EXECUTOR") or "local").strip()
    name, sep, address = spec.partition("://")
    scheme = SCHEMES.get(name)
    if scheme is None or bool(sep) != scheme.address:
        raise InputError(f"--executor: expected {executor_forms()}; received {spec!r}")
    missing = [package for package in scheme.needs if importlib.util.find_spec(package) is None]
    if missing:
        install = f"pip install 'keras-edgekit[{scheme.extra}]'" if scheme.extra else f"pip install {missing[0]}"
        raise InputError(f"--executor {spec} needs {missing[0]}, which is not installed: {install} "
                         "(or use --executor local)")
    return scheme, address


def _worker_count() -> int | None:
    """``$EDGEKIT_WORKERS``: worker processes of the local pool (0: none), or of ``dask://local``;
    None when it is not set (each executor has its own default)."""
    text = os.environ.get("EDGEKIT_WORKERS", "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) > 64:
        raise InputError(f"EDGEKIT_WORKERS: expected a whole number from 0 to 64 (0: no worker processes), received {text!r}")
    return int(text)
