"""Tables that ship with scikit-learn: breast cancer, wine (classification), diabetes (regression)."""

from __future__ import annotations

import numpy as np


def _classification(loader):
    data = loader()
    return {"x": data.data.astype(np.float32), "y": data.target.astype(np.int64)}, [str(c) for c in data.target_names]


def breast_cancer(spec):
    """Wisconsin breast cancer: 569 samples, 30 features, malignant/benign. Use normalize: standard."""
    from sklearn.datasets import load_breast_cancer

    return _classification(load_breast_cancer)


def wine(spec):
    """Wine recognition: 178 samples, 13 chemical features, 3 cultivars. Use normalize: standard."""
    from sklearn.datasets import load_wine

    return _classification(load_wine)


def diabetes(spec):
    """Diabetes: 442 patients, 10 (already scaled) features, disease progression after a year (25-346)."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return {"x": data.data.astype(np.float32), "y": data.target.astype(np.float32)}, ["progression"]


def glitchy_sensors(spec):
    """6000 generated recordings of 64 redundant sensors, 8 classes, 3% with a common-mode glitch.

    Each recording observes a 3-dimensional hidden state through 64 noisy sensors; the class is
    a quantile band of one direction of that state (fine-grained and ordinal). In 3% of the
    recordings every sensor jumps by the same +-30 (a ground or supply-rail glitch) while the
    label stays. The glitches dominate min-max int8 calibration: the first hidden layer sums
    them coherently, its range grows about 4x, and the clean 97% lose resolution. QAT's
    moving-average ranges leave the rare glitch out. Use normalize: standard. Fixed seed.
    """
    rng = np.random.default_rng(7)
    n, sensors, hidden, classes = 6000, 64, 3, 8
    state = rng.standard_normal((n, hidden)).astype(np.float32)
    mixing = rng.standard_normal((hidden, sensors)).astype(np.float32) / np.sqrt(hidden)
    x = state @ mixing + 0.3 * rng.standard_normal((n, sensors)).astype(np.float32)
    direction = state @ np.array([1.0, 0.5, -0.3], np.float32)
    y = np.digitize(direction, np.quantile(direction, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)
    glitch = rng.random(n) < 0.03
    x[glitch] += 30.0 * np.sign(rng.standard_normal(glitch.sum()))[:, None].astype(np.float32)
    return {"x": x.astype(np.float32), "y": y}, [f"band{i}" for i in range(classes)]
