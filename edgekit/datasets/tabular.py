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
