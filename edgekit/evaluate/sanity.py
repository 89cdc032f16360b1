"""The sanity floor under a classification build: what predicting the majority class, or
guessing, scores on the test split, and whether the Keras baseline is above it.

A baseline at or below that floor (within its 95% interval) makes every row's numbers
meaningless, however well each artifact matches it: a build whose Keras baseline scored 0.198 on
5 classes (chance: 0.2) was `ok` in every row and passed 23 budgets. Such a baseline is marked
``suspect`` (results.json ``sanity``, the baseline row's ``suspect``), the build says so in one
line with the usual causes, and ``edgekit check`` fails it unless told otherwise.

Also here: which epoch early stopping restored, and on how many validation samples (a split of
8 samples chose epoch 3 of 33 for a model that then predicted one class everywhere).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

#: a validation split smaller than this gets a warning: early stopping (and int8-mixed) choose on it
SMALL_VALIDATION = 30
#: what the build log adds to ``suspect_line``
CONSEQUENCE = "every row inherits it; `edgekit check` fails this build (--allow-suspect to pass it anyway)"
#: the two-sided 95% normal quantile, for the Wilson interval of an accuracy
_Z = 1.959964


def wilson(share: float, n: int) -> list[float]:
    """The 95% Wilson score interval of a proportion ``share`` observed on ``n`` samples
    (correct near 0 and 1, unlike the normal approximation)."""
    if n <= 0:
        return [0.0, 1.0]
    centre = (share + _Z**2 / (2 * n)) / (1 + _Z**2 / n)
    half = _Z * math.sqrt(share * (1 - share) / n + _Z**2 / (4 * n * n)) / (1 + _Z**2 / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def early_stopping(recipe, run_dir: Path, validation_samples: int) -> dict[str, Any] | None:
    """Which epoch early stopping restored, read from the training's history (run_dir/model/
    history.json): tf_keras restores the first epoch of lowest val_loss at the end of training,
    stopped early or not. None when the recipe does not stop early or nothing was trained here."""
    if recipe.model.file is not None or not recipe.train.early_stopping_patience or not validation_samples:
        return None
    try:
        losses = json.loads((Path(run_dir) / "model" / "history.json").read_text()).get("val_loss") or []
    except (OSError, ValueError, AttributeError):
        return None
    finite = [value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf for value in losses]
    if not finite or min(finite) == math.inf:
        return None
    best = int(np.argmin(finite))
    return {"restored_epoch": best + 1, "epochs_run": len(finite), "epochs_planned": recipe.train.epochs,
            "val_loss": float(finite[best]), "validation_samples": int(validation_samples),
            "patience": recipe.train.early_stopping_patience}


def restored_line(restore: dict[str, Any]) -> str:
    """``early stopping restored the weights of epoch 3 of 33 (lowest val_loss 0.93 on 8 validation samples)``."""
    return (f"early stopping restored the weights of epoch {restore['restored_epoch']} of {restore['epochs_run']} "
            f"(lowest val_loss {restore['val_loss']:.4g} on {restore['validation_samples']} validation samples)")


def floor(task: str, metrics: dict[str, float], outputs, y_test, class_names: list[str],
          restore: dict[str, Any] | None = None, per_output: dict[str, dict] | None = None) -> dict[str, Any] | None:
    """The sanity floor of a classification build (results.json ``sanity``), None for other tasks.

    The floor is the higher of chance (1 / classes) and the majority class's share of the test
    split (what a model that predicts that class everywhere scores). The baseline is
    ``suspect`` when its accuracy's 95% Wilson interval reaches down to the floor: it is not
    measurably better than predicting the majority class.

    Args:
        task: the recipe's task.
        metrics: the Keras baseline's metrics (``accuracy``).
        outputs: the baseline's test-split outputs (its predicted classes are counted).
        y_test: the test split's class ids.
        class_names: the classes, in id order.
        restore: ``early_stopping``'s record, named in the line when the baseline is suspect.
        per_output: a model of several outputs: the baseline's per-output scores (its
            ``outputs``); the floor is the headline classification output's, read from the
            field of that name in ``outputs`` and ``y_test``.
    """
    if getattr(y_test, "dtype", None) is not None and y_test.dtype.names:
        head = next((name for name, rec in (per_output or {}).items()
                     if rec.get("headline") and rec.get("task") == "classification" and name in y_test.dtype.names), None)
        if head is None:
            return None
        record = floor(task, per_output[head]["metrics"], outputs[head] if outputs.dtype.names else outputs,
                       y_test[head], class_names, restore)
        return None if record is None else {**record, "output": head}
    accuracy = metrics.get("accuracy")
    y = np.asarray(y_test).reshape(-1)
    if task != "classification" or accuracy is None or not len(y) or not math.isfinite(accuracy):
        return None
    classes = max(len(class_names), int(y.max()) + 1, np.asarray(outputs).shape[-1] if np.ndim(outputs) else 0)
    counts = np.bincount(y, minlength=classes)
    majority = int(counts.argmax())
    predicted = np.bincount(np.asarray(outputs).argmax(axis=-1).reshape(-1), minlength=classes)
    top = int(predicted.argmax())
    record: dict[str, Any] = {
        "metric": "accuracy", "test_samples": int(len(y)), "classes": int(classes),
        "chance": 1.0 / classes,
        "majority_class": {"id": majority, "name": _name(class_names, majority), "share": float(counts[majority] / len(y))},
        "baseline": float(accuracy), "baseline_ci95": wilson(float(accuracy), len(y)),
        "predicted_classes": int((predicted > 0).sum()),
        "most_predicted": {"id": top, "name": _name(class_names, top), "share": float(predicted[top] / len(y))},
    }
    record["floor"] = max(record["chance"], record["majority_class"]["share"])
    record["suspect"] = bool(record["baseline_ci95"][0] <= record["floor"] + 1e-12)
    if restore is not None:
        record["early_stopping"] = restore
    if record["suspect"]:
        record["reason"] = suspect_line(record)
    return record


def _name(class_names: list[str], index: int) -> str:
    return str(class_names[index]) if index < len(class_names) else str(index)


def suspect_line(record: dict[str, Any]) -> str:
    """One line: the baseline against the floor, what it predicts, the usual causes, what follows."""
    lo, hi = record["baseline_ci95"]
    major = record["majority_class"]
    top = record["most_predicted"]
    level = (f"the majority class ('{major['name']}': {major['share']:.4f}) and chance ({record['chance']:.4f})")
    one_class = (f"; it predicts '{top['name']}' for {top['share']:.0%} of the samples"
                 if top["share"] >= 0.9 else "")
    causes = ["inputs scaled twice or not at all (data.normalize on top of the data's own scaling, or raw values)",
              "labels in another order than the inputs"]
    restore = record.get("early_stopping")
    if restore:
        causes.append(f"early stopping: it restored epoch {restore['restored_epoch']} of {restore['epochs_run']}, "
                      f"chosen by {restore['validation_samples']} validation samples")
    else:
        causes.append("too little training")
    return (f"suspect baseline: the Keras model scores accuracy {record['baseline']:.4f} [{lo:.4f}-{hi:.4f}] on "
            f"{record['test_samples']} test samples, not above {level}{one_class}. Usual causes: {'; '.join(causes)}")



def small_validation_line(validation_samples: int) -> str | None:
    """A warning for a validation split of fewer than SMALL_VALIDATION samples (none when it is empty)."""
    if not 0 < validation_samples < SMALL_VALIDATION:
        return None
    return (f"warning: the validation split holds {validation_samples} sample(s) (under {SMALL_VALIDATION}): early "
            "stopping's restored epoch and int8-mixed's choices rest on so few; raise data.val_fraction or add samples")
