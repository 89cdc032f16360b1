"""The bench stage: the one timing loop's statistics, the stage itself, and `edgekit bench` on files."""
