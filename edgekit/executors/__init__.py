"""Where a build's tasks run: the executor contract (base), the local pool and in-process
executors, one module per other executor; ``schemes.SCHEMES`` maps an ``--executor`` value to
its module."""
