"""Anomaly detection sets: long series cut into fixed windows, flagged when a window holds an anomaly."""

from __future__ import annotations

import numpy as np

from edgekit.data.timeseries import aeon_data_dir
from edgekit.errors import DataError

WINDOW = 64
TRAIN_STRIDE = 8  # overlapping windows give the autoencoder more normal shapes to learn
TEST_STRIDE = 32  # half-overlapping test windows: each point is scored about twice


def windows(series: np.ndarray, flags: np.ndarray | None, window: int, stride: int):
    """(steps, channels) -> (n, window, channels), and per window 1 when any point is anomalous."""
    starts = range(0, len(series) - window + 1, stride)
    x = np.stack([series[s : s + window] for s in starts]).astype(np.float32)
    y = None if flags is None else np.array([int(flags[s : s + window].any()) for s in starts], np.int64)
    return x, y


def _read_timeeval_csv(path):
    """A TimeEval CSV (timestamp, value columns..., is_anomaly) as (values [steps, channels], flags)."""
    if not path.is_file():
        raise DataError(f"aeon anomaly file not found: {path}; it ships with aeon 1.x: pip install --force-reinstall 'aeon>=1.6,<1.7'")
    table = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64)
    return table[:, 1:-1].astype(np.float32), table[:, -1].astype(bool)


def ecg_anomaly(spec):
    """aeon's synthetic ECG 'ecg-diff-count-3' (GutenTAG), in its semi-supervised setting.

    Training: the 10000-point series without anomalies, as windows of 64 points every 8.
    Test: the 10000-point test series with 300 anomalous points (three kinds of anomaly), as
    windows of 64 every 32, flagged 1 when any point in the window is anomalous.
    """
    folder = aeon_data_dir() / "UnitTest"
    train, _ = _read_timeeval_csv(folder / "ecg-diff-count-3_TRAIN_NA.csv")
    test, test_flags = _read_timeeval_csv(folder / "ecg-diff-count-3_TEST.csv")
    x_train, _ = windows(train, None, WINDOW, TRAIN_STRIDE)
    x_test, y_test = windows(test, test_flags, WINDOW, TEST_STRIDE)
    return {"x_train": x_train, "y_train": np.zeros(len(x_train), np.int64), "x_test": x_test, "y_test": y_test}, ["normal", "anomaly"]
