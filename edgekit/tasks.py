"""The task table: what a recipe's ``task`` means for data, training and evaluation.

One row per task. Everything that differs between tasks (labels, loss, output layer, metrics
and which way is better) is read from here, so no other module needs an if-chain over task
names. Metric functions live in ``edgekit.evaluate.scores``; this module stays import-light (no
numpy-heavy work, no TensorFlow) because the recipe schema reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One row of the task table.

    Attributes:
        name: the recipe's ``task`` value.
        labels: what ``y`` holds: "class ids" (int, one per sample), "targets" (float,
            one or more per sample), "anomaly flags" (int 0/1; training holds normal samples
            only) or "masks" (int class id per pixel).
        loss: the Keras loss the model is trained with.
        output: what the model's output must be, for docs and ``edgekit models``.
        primary_metric: the metric in the results table, the baseline delta and budgets.
        higher_is_better: direction of the primary metric (check.py flips its sign when false).
        fit_target: "labels" (fit x -> y) or "inputs" (fit x -> x, autoencoders).
        description: one line for docs.
        scored_validation: the validation split can be scored with the primary metric (anomaly's
            holds normal samples only): what the int8-mixed search needs.
    """

    name: str
    labels: str
    loss: str
    output: str
    primary_metric: str
    higher_is_better: bool
    fit_target: str
    description: str
    scored_validation: bool = True


TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(
            name="classification",
            labels="class ids",
            loss="sparse_categorical_crossentropy",
            output="softmax over classes, shape [classes]",
            primary_metric="accuracy",
            higher_is_better=True,
            fit_target="labels",
            description="one class per sample; accuracy and top-k accuracy (k=5 above 5 classes, 2 for 3 to 5)",
        ),
        Task(
            name="regression",
            labels="targets",
            loss="mse",
            output="linear, shape [targets], in the units of y",
            primary_metric="mae",
            higher_is_better=False,
            fit_target="labels",
            description="one or more real targets per sample; mean absolute error and RMSE in the units of y",
        ),
        Task(
            name="anomaly",
            labels="anomaly flags",
            loss="mse",
            output="a reconstruction of the input, same shape as the input",
            primary_metric="roc_auc",
            higher_is_better=True,
            fit_target="inputs",
            description="an autoencoder trained on normal samples only; ROC AUC of the per-sample "
            "reconstruction error (mean squared) against the anomaly flags",
            scored_validation=False,
        ),
        Task(
            name="segmentation",
            labels="masks",
            loss="sparse_categorical_crossentropy",
            output="softmax over classes per pixel, shape [H, W, classes]",
            primary_metric="mean_iou",
            higher_is_better=True,
            fit_target="labels",
            description="one class per pixel; mean IoU over the classes present, and pixel accuracy",
        ),
    ]
}

TASK_NAMES = tuple(TASKS)
