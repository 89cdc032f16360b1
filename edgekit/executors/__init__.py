"""Where a build's tasks run: the executor contract (base), the local pool and in-process
executors, and Dask; ``SCHEMES`` maps an ``--executor`` value to its module."""
