"""The executors' shared fixture: one Dask cluster for the whole folder (starting one costs its
workers' TensorFlow import)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def cluster():
    """One 2-worker Dask cluster of worker processes (dask://local), for the tests that build
    through the Python side and the executor contract; its workers set up as a build's are
    (TensorFlow imported)."""
    from edgekit.evaluate import worker
    from edgekit.executors.dask_cluster import DaskExecutor

    executor = DaskExecutor("local", worker.prepare, (1,), workers=2)
    yield executor
    executor.close()
