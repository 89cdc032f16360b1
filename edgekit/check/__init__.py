"""`edgekit check`: budgets (recipe schema), baselines, the gate and its output. Light imports only.

Calling the package, ``edgekit.check(results, ...)``, is ``edgekit.api.check``."""

from edgekit import _callable_package

_callable_package(__name__)
