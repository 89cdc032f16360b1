"""Task metrics on real outputs, and parity of every artifact against the Keras baseline."""

from __future__ import annotations

import numpy as np


def classification_metrics(outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 accuracy of class scores against integer labels."""
    return {"accuracy": float(np.mean(outputs.argmax(axis=-1) == labels))}


METRICS = {"classification": classification_metrics}
PRIMARY_METRIC = {"classification": "accuracy"}


def metrics(task: str, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return METRICS[task](outputs, labels)


def parity(outputs: np.ndarray, baseline: np.ndarray, task: str) -> dict[str, float]:
    """How closely an artifact's outputs follow the baseline's, on the same test inputs."""
    diff = np.abs(outputs.astype(np.float64) - baseline.astype(np.float64))
    result = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if task == "classification":
        result["top1_agreement"] = float(np.mean(outputs.argmax(-1) == baseline.argmax(-1)))
    return result


def delta(row_metrics: dict[str, float], baseline_metrics: dict[str, float]) -> dict[str, float]:
    """Row metric minus baseline metric, for every metric both have."""
    return {k: row_metrics[k] - baseline_metrics[k] for k in row_metrics if k in baseline_metrics}
