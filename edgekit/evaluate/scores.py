"""Task metrics on real outputs, and parity of every artifact against the Keras baseline.

Every metric is computed from the outputs a runtime really produced on the test split. The
task table (``edgekit.tasks``) says which metric is primary and which way is better.
"""

from __future__ import annotations

import numpy as np

from edgekit.tasks import TASKS


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose highest score is the label."""
    return float(np.mean(outputs.argmax(axis=-1) == labels))


def top_k_accuracy(outputs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of samples whose label is among the ``k`` highest scores.

    A label tied with other scores counts as ranked above them (only strictly higher scores
    push it down), so the result does not depend on the sort order of ties.
    """
    label_scores = np.take_along_axis(outputs, labels[:, None], axis=-1)
    higher = (outputs > label_scores).sum(axis=-1)
    return float(np.mean(higher < k))


def softmax(outputs: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (classes): probabilities from logits."""
    shifted = np.exp(outputs - outputs.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def mae(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean absolute error over every sample and target."""
    return float(np.mean(np.abs(outputs.reshape(targets.shape).astype(np.float64) - targets)))


def rmse(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Root mean squared error over every sample and target."""
    return float(np.sqrt(np.mean((outputs.reshape(targets.shape).astype(np.float64) - targets) ** 2)))


def roc_auc(scores: np.ndarray, flags: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = more anomalous) against 0/1 ``flags``.

    The Mann-Whitney form: the probability that a random positive outscores a random
    negative, ties counting one half. Raises ValueError when only one class is present,
    where the AUC is undefined.
    """
    from scipy.stats import rankdata

    flags = np.asarray(flags).astype(bool)
    positives, negatives = int(flags.sum()), int((~flags).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"ROC AUC needs both normal and anomalous samples; got {positives} anomalous, {negatives} normal")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))  # average ranks for ties
    return float((ranks[flags].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def reconstruction_error(outputs: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Per-sample mean squared difference between a reconstruction and its input."""
    diff = outputs.reshape(inputs.shape).astype(np.float64) - inputs
    return np.mean(diff.reshape(len(diff), -1) ** 2, axis=1)


def mean_iou(predicted: np.ndarray, masks: np.ndarray, num_classes: int) -> float:
    """Mean intersection over union of per-pixel class ids, over the classes that occur.

    A class absent from both the prediction and the mask has no IoU and is left out, so
    images without some class do not count as perfect on it.
    """
    ious = []
    for c in range(num_classes):
        pred, true = predicted == c, masks == c
        union = np.logical_or(pred, true).sum()
        if union:
            ious.append(np.logical_and(pred, true).sum() / union)
    return float(np.mean(ious)) if ious else 0.0


def _classification(outputs, labels, inputs):
    result = {"accuracy": accuracy(outputs, labels)}
    classes = outputs.shape[-1]
    k = 5 if classes > 5 else 2 if classes > 2 else None
    if k:
        result[f"top{k}_accuracy"] = top_k_accuracy(outputs, labels, k)
    return result


def _regression(outputs, targets, inputs):
    return {"mae": mae(outputs, targets), "rmse": rmse(outputs, targets)}


def _anomaly(outputs, flags, inputs):
    if inputs is None:
        raise ValueError("the anomaly task needs the test inputs to compute reconstruction errors")
    errors = reconstruction_error(outputs, inputs)
    flags = np.asarray(flags).astype(bool)
    return {
        "roc_auc": roc_auc(errors, flags),
        "error_normal": float(errors[~flags].mean()),
        "error_anomalous": float(errors[flags].mean()),
    }


def _segmentation(outputs, masks, inputs):
    predicted = outputs.argmax(axis=-1)
    return {
        "mean_iou": mean_iou(predicted, masks, outputs.shape[-1]),
        "pixel_accuracy": float(np.mean(predicted == masks)),
    }


#: the SNR of outputs that agree with the reference to within float32 rounding, and of the Keras
#: fp32 row against itself (infinite, which strict JSON cannot hold); the per-layer error's cap
SNR_CAP = 120.0


def snr_db(outputs: np.ndarray, reference: np.ndarray) -> float:
    """Signal-to-noise ratio of ``outputs`` against ``reference`` in dB, over the whole array:
    10 log10(sum(reference^2) / sum((outputs - reference)^2)), in float64, within +-SNR_CAP.

    One number for the whole test split (not a mean of per-sample SNRs, which one near-silent
    sample would dominate). Identical outputs, and differences below float32 rounding, read as
    SNR_CAP; a zero reference with any difference reads as -SNR_CAP.
    """
    outputs = np.asarray(outputs, np.float64).reshape(np.shape(reference))
    reference = np.asarray(reference, np.float64)
    signal, noise = float(np.sum(reference**2)), float(np.sum((outputs - reference) ** 2))
    if noise == 0 or (signal > 0 and noise <= signal * 10 ** (-SNR_CAP / 10)):
        return SNR_CAP
    if signal == 0:
        return -SNR_CAP
    return float(np.clip(10 * np.log10(signal / noise), -SNR_CAP, SNR_CAP))


def are_class_scores(reference: np.ndarray) -> bool:
    """Whether outputs look like class scores: one row per sample, a last axis wider than 1,
    and every row of the reference a distribution (values in [0, 1] summing to 1)."""
    reference = np.asarray(reference, np.float64)
    if reference.ndim != 2 or reference.shape[-1] < 2 or not reference.size:
        return False
    return bool(reference.min() >= -1e-6 and reference.max() <= 1 + 1e-6
                and np.allclose(reference.sum(axis=-1), 1.0, atol=1e-3))


def _fidelity(outputs, reference, inputs):
    outputs = np.asarray(outputs, np.float64).reshape(np.shape(reference))
    reference = np.asarray(reference, np.float64)
    result = {"snr_db": snr_db(outputs, reference), "max_abs_diff": float(np.max(np.abs(outputs - reference)))}
    if are_class_scores(reference):
        result["top1_agreement"] = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
    return result


METRICS = {"classification": _classification, "regression": _regression, "anomaly": _anomaly, "segmentation": _segmentation,
           "fidelity": _fidelity}
PRIMARY_METRIC = {name: task.primary_metric for name, task in TASKS.items()}
HIGHER_IS_BETTER = {name: task.higher_is_better for name, task in TASKS.items()}


def metrics(task: str, outputs: np.ndarray, labels: np.ndarray, x: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of ``task`` for outputs on the test split.

    A classifier may output logits or probabilities (results.json ``model.output``); every
    classification and segmentation metric here depends only on the order of the scores
    (argmax, top-k), which softmax keeps, so both score alike and no softmax is applied. A
    metric that needs probabilities must take ``softmax(outputs)`` first for a logits model.

    Args:
        task: a name from ``edgekit.tasks.TASKS``.
        outputs: float outputs of the model or artifact, one row per test sample.
        labels: the test split's ``y``; for a task scored against the reference (fidelity),
            the Keras fp32 model's outputs on the test split.
        x: the test split's inputs; the anomaly task scores reconstructions against them.
    """
    return METRICS[task](outputs, labels, x)


def parity(outputs: np.ndarray, baseline: np.ndarray, task: str) -> dict[str, float]:
    """How closely an artifact's outputs follow the baseline's, on the same test inputs.

    For a classifier that outputs logits (baseline values outside [0, 1]) both sides go through
    the same softmax first, so ``max_abs_diff`` and ``mean_abs_diff`` are differences of
    probabilities for every classifier, whatever its last layer (logits of an int8 artifact
    differ by whole units where its probabilities differ by hundredths).
    """
    outputs, baseline = np.asarray(outputs, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if task in ("classification", "segmentation") and baseline.size and (baseline.min() < 0 or baseline.max() > 1):
        outputs, baseline = softmax(outputs), softmax(baseline)
    diff = np.abs(outputs - baseline)
    result = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if task in ("classification", "segmentation") or (task == "fidelity" and are_class_scores(baseline)):
        # Per sample for classification, per pixel for segmentation.
        result["top1_agreement"] = float(np.mean(outputs.argmax(-1) == baseline.argmax(-1)))
    return result


def delta(row_metrics: dict[str, float], baseline_metrics: dict[str, float]) -> dict[str, float]:
    """Row metric minus baseline metric, for every metric both have; never an SNR against a
    baseline at SNR_CAP (task fidelity's reference, scored against itself): that difference
    measures the cap (-96.1 dB for a row at 23.9 dB), not a loss."""
    return {k: row_metrics[k] - baseline_metrics[k] for k in row_metrics if k in baseline_metrics
            and not (k == "snr_db" and baseline_metrics[k] >= SNR_CAP)}


def output_scores(task: str, outputs, reference, labels=None, heads: dict[str, str] | None = None) -> dict[str, dict]:
    """Every output of a model of several scored on its own: ``{name: {"task", "primary_metric",
    "metrics", "parity"}}`` in the reference's order.

    Args:
        task: the recipe's task.
        outputs: the row's test outputs: a structured batch, one field per output (a plain array
            for a model of one output whose labels are named after it).
        reference: the Keras fp32 outputs on the same inputs, the same layout.
        labels: the test split's labels, one field per labelled output (``y_test_<output>``).
        heads: {output name: task} of the labelled outputs; every other output is scored
            against ``reference`` (fidelity). Under task fidelity every output is.
    """
    heads = dict(heads or {})
    names = list(reference.dtype.names) if reference.dtype.names else [next(iter(heads), "output")]

    def field(batch, name):
        return batch[name] if batch.dtype.names else batch

    out = {}
    for name in names:
        head = heads.get(name) if TASKS[task].needs_labels and name in heads else "fidelity"
        got, ref = field(outputs, name), field(reference, name)
        truth = ref if head == "fidelity" else field(labels, name)
        out[name] = {"task": head, "primary_metric": TASKS[head].primary_metric,
                     "metrics": metrics(head, got, truth), "parity": parity(got, ref, head)}
    return out


def headline(per_output: dict[str, dict], task: str) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, parity) of a row from its outputs' (``output_scores``): the metrics of the WORST
    output among those scored for ``task`` (by its primary metric and direction), marked
    ``"headline": True`` in ``per_output``; each parity figure at its worst over every output
    (the largest differences, the smallest top-1 agreement). Never a pooled figure.

    Raises:
        ValueError: no output is scored for ``task`` (the recipe's task labels none of them).
    """
    primary, higher = TASKS[task].primary_metric, TASKS[task].higher_is_better
    candidates = [name for name, rec in per_output.items() if rec["task"] == task and primary in rec["metrics"]]
    if not candidates:
        tasks = ", ".join(f"{name} {rec['task']}" for name, rec in per_output.items())
        raise ValueError(f"no output is scored for task {task} (outputs: {tasks}); set task to one of theirs")
    pick = (min if higher else max)(candidates, key=lambda name: per_output[name]["metrics"][primary])
    for name, rec in per_output.items():
        rec["headline"] = name == pick
    worst: dict[str, float] = {}
    for rec in per_output.values():
        for key, value in rec["parity"].items():
            low = key.endswith("agreement")  # agreement: less is worse; differences: more is worse
            if key not in worst or (value < worst[key] if low else value > worst[key]):
                worst[key] = value
    return dict(per_output[pick]["metrics"]), worst
