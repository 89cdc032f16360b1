"""A build: its stages in order, its run directory and build log, many recipes, the whole
build as one task, and the checks made before it starts."""
