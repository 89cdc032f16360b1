"""The bench stage: the one timing loop's statistics, the stage itself, and `edgekit bench` on files.

Calling the package, ``edgekit.bench(files, ...)``, is ``edgekit.api.bench``."""

from edgekit import _callable_package

_callable_package(__name__)
