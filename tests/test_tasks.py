"""Task metrics against hand-computed cases, and the direction of every primary metric."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.evaluate import scores
from edgekit.tasks import TASKS
from tests.conftest import real_row


def test_accuracy_and_top_k():
    outputs = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([1, 1, 0, 2])
    assert scores.accuracy(outputs, labels) == 0.25  # only the first is right
    # top-2: sample 0 (1st), sample 1 (label 2nd), sample 2 (label 0 is 3rd: miss), sample 3 (3rd: miss)
    assert scores.top_k_accuracy(outputs, labels, 2) == 0.5
    assert scores.top_k_accuracy(outputs, labels, 3) == 1.0


def test_classification_metrics_pick_k_from_the_class_count():
    three = scores.metrics("classification", np.eye(3), np.arange(3))
    assert three == {"accuracy": 1.0, "top2_accuracy": 1.0}
    assert set(scores.metrics("classification", np.eye(10), np.arange(10))) == {"accuracy", "top5_accuracy"}
    assert set(scores.metrics("classification", np.eye(2), np.arange(2))) == {"accuracy"}


def test_mae_and_rmse():
    outputs = np.array([[1.0], [2.0], [5.0]])
    targets = np.array([2.0, 2.0, 1.0])
    m = scores.metrics("regression", outputs, targets)
    assert m["mae"] == pytest.approx((1 + 0 + 4) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((1 + 0 + 16) / 3))


def test_roc_auc_hand_cases():
    flags = np.array([0, 0, 1, 1])
    assert scores.roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), flags) == 1.0
    assert scores.roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), flags) == 0.0
    # Pairs (pos, neg): (0.35 vs 0.1 win, vs 0.4 lose), (0.8 vs both win) -> 3 of 4.
    assert scores.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), flags) == 0.75
    # A tie between a positive and a negative counts one half: (0.5 vs 0.5 tie, vs 0.1 win) x 1 positive.
    assert scores.roc_auc(np.array([0.5, 0.1, 0.5]), np.array([0, 0, 1])) == 0.75


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        scores.roc_auc(np.array([0.1, 0.2]), np.array([0, 0]))


def test_anomaly_metrics_score_reconstruction_error_against_the_inputs():
    x = np.zeros((4, 3, 1), np.float32)
    reconstructions = x.copy()
    reconstructions[2:] += 1.0  # the two anomalous samples are reconstructed badly
    m = scores.metrics("anomaly", reconstructions, np.array([0, 0, 1, 1]), x=x)
    assert m == {"roc_auc": 1.0, "error_normal": 0.0, "error_anomalous": 1.0}
    with pytest.raises(ValueError, match="needs the test inputs"):
        scores.metrics("anomaly", reconstructions, np.array([0, 0, 1, 1]))


def test_mean_iou_hand_case():
    masks = np.array([[[0, 0], [1, 1]]])
    predicted = np.array([[[0, 1], [1, 1]]])
    # class 0: intersection 1, union 2 -> 0.5; class 1: intersection 2, union 3 -> 2/3; class 2 absent.
    assert scores.mean_iou(predicted, masks, 3) == pytest.approx((0.5 + 2 / 3) / 2)
    outputs = np.eye(3)[predicted]  # one-hot scores per pixel
    m = scores.metrics("segmentation", outputs, masks)
    assert m["mean_iou"] == pytest.approx((0.5 + 2 / 3) / 2) and m["pixel_accuracy"] == 0.75


def test_segmentation_parity_is_per_pixel():
    a = np.eye(2)[np.array([[[0, 1], [1, 1]]])]
    b = np.eye(2)[np.array([[[0, 1], [1, 0]]])]
    assert scores.parity(a, b, "segmentation")["top1_agreement"] == 0.75


def test_every_task_has_its_primary_metric_and_direction():
    for name, task in TASKS.items():
        assert scores.PRIMARY_METRIC[name] == task.primary_metric
        assert scores.HIGHER_IS_BETTER[name] is task.higher_is_better
    assert scores.HIGHER_IS_BETTER["regression"] is False


def test_check_flips_the_drop_for_lower_is_better_metrics():
    from edgekit.check.budgets import CheckSpec
    from edgekit.check.gate import compare

    def results(mae_int8, higher_is_better):
        rows = [real_row("keras", "fp32", metrics={"mae": 40.0}), real_row("tflite", "int8", metrics={"mae": mae_int8})]
        return {"primary_metric": "mae", "higher_is_better": higher_is_better, "baseline": "keras-fp32@cpu", "rows": rows}

    def drop(doc):
        spec = CheckSpec.model_validate({"defaults": {"max_metric_drop": 0.5}})
        outcome = next(o for o in compare(doc, spec) if o.row == "tflite-int8@cpu" and "drop" in o.budget)
        return outcome

    worse = drop(results(41.0, False))  # MAE up by 1: a drop of 1 > 0.5
    assert worse.result == "fail" and worse.value == "1.0000"
    better = drop(results(39.0, False))
    assert better.result == "pass" and better.value == "-1.0000"
    # Without the direction a higher-is-better metric would read the same numbers the other way.
    assert drop(results(39.0, True)).result == "fail"
