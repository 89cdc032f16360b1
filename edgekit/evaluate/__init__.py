"""The evaluate stage: task scores, weight statistics, and the variants they describe."""
