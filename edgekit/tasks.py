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
        scored_against: "labels" (the test split's ``y``) or "reference" (the Keras fp32 model's
            own outputs on the test split: label-free fidelity, where the data has no ``y``).
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
    scored_against: str = "labels"

    @property
    def needs_labels(self) -> bool:
        """Whether the data must hold ``y`` (fidelity's may have none: x only)."""
        return self.scored_against == "labels"


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
        Task(
            name="fidelity",
            labels="none (x only; labels, where the data has them, are ignored)",
            loss="none: a model.file is not trained; a zoo model that trains itself (dcgan) brings its own losses",
            output="any: every artifact's outputs are compared with the Keras fp32 model's on the same inputs",
            primary_metric="snr_db",
            higher_is_better=True,
            fit_target="none",
            description="label-free: every artifact scored against the Keras fp32 outputs on the test split: SNR in dB "
            "over the whole split (capped at 120 dB, which the Keras row itself gets), max abs diff, and top-1 "
            "agreement where the outputs are class scores",
            scored_validation=False,
            scored_against="reference",
        ),
    ]
}

TASK_NAMES = tuple(TASKS)
