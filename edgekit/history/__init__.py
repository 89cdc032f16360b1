"""The results history: builds recorded in a database (``store``), their trends
(``edgekit history``: ``trend``) and the window check (``edgekit check --history``: ``window``).

Light imports only: nothing here imports TensorFlow; matplotlib only when a plot is drawn.
"""

from __future__ import annotations

import os


def wanted(url: str | None) -> str | None:
    """The store a build records into: ``url`` (``--history``), else the default one when the
    environment variable CI is set (as CI services set it), else None (no recording)."""
    if url:
        return url
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        from edgekit.history.store import default_url

        return default_url()
    return None


def record(results: dict, url: str | None = None, run_dir=None) -> tuple[str, int, int]:
    """Record a build's results into the store at ``url`` (default: ``store.default_url()``);
    returns (the store, rows new, rows given). Recording the same results again adds nothing.

    Raises:
        InputError: the store cannot be opened or written (one line).
    """
    from edgekit.history.store import open_store

    store = open_store(url)
    added, given = store.record(results, run_dir)
    return store.url, added, given
