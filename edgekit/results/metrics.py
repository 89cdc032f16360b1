"""Which way each metric of results.json is better, and which metric a results file is judged by."""

from __future__ import annotations

# For results.json files written before "higher_is_better" was recorded.
LOWER_IS_BETTER = frozenset({"mse", "mae", "rmse", "loss"})


def higher_is_better(results: dict, metric: str | None = None) -> bool:
    """Whether more of ``metric`` (default: the run's primary metric) is better: results.json's
    own ``higher_is_better`` (the task table's) for its primary metric, else by the metric's name."""
    primary = results.get("primary_metric")
    metric = metric or primary
    if metric == primary and "higher_is_better" in results:
        return bool(results["higher_is_better"])
    return metric not in LOWER_IS_BETTER


def judged_metric(results: dict) -> str:
    """The metric the recipe's budgets judge (results.json ``gate_metric``: check.defaults.metric),
    else the primary one: what the report's Pareto front and ``Results.best`` rank rows by."""
    return results.get("gate_metric") or results["primary_metric"]
