"""Time series classification sets that ship inside aeon (UCR/UEA archive), with their own splits.

Read straight from the .ts files in aeon's package folder (``aeon/datasets/data``), so nothing
can reach for the network. Series become (steps, channels) float32 arrays, the layout Keras
sequence layers take.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgekit.data.builtins import encode, sorted_names
from edgekit.errors import DataError


def aeon_data_dir() -> Path:
    """aeon's bundled data folder, found without importing aeon."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the aeon datasets need aeon, which is not installed; run: pip install 'aeon>=1.6,<1.7'")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def load_ts_split(name: str, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """One split of a bundled .ts problem: a list of (channels, steps) arrays and the labels."""
    path = aeon_data_dir() / name / f"{name}_{split}.ts"
    if not path.is_file():
        raise DataError(f"aeon dataset file not found: {path}; reinstall aeon (pip install --force-reinstall 'aeon>=1.6,<1.7')")
    from aeon.datasets import load_from_ts_file

    x, y = load_from_ts_file(str(path))
    return [np.asarray(series, dtype=np.float32) for series in x], np.asarray(y)


def _problem(name: str):
    x_train, y_train = load_ts_split(name, "TRAIN")
    x_test, y_test = load_ts_split(name, "TEST")
    names = sorted_names([*y_train, *y_test])
    steps = max(s.shape[-1] for s in (*x_train, *x_test))
    return {
        "x_train": pad_series(x_train, steps),
        "y_train": encode(y_train, names),
        "x_test": pad_series(x_test, steps),
        "y_test": encode(y_test, names),
    }, names


def pad_series(series: list[np.ndarray], steps: int) -> np.ndarray:
    """(channels, length) arrays as one (n, steps, channels) array, zero-padded at the start.

    Padding goes in front so that every series ends on the last step: a recurrent network's
    final state then follows the real samples, not a run of zeros.
    """
    out = np.zeros((len(series), steps, series[0].shape[0]), np.float32)
    for i, s in enumerate(series):
        out[i, steps - s.shape[-1]:] = s.T
    return out


def japanese_vowels(spec):
    """JapaneseVowels: 270 train / 370 test utterances of 9 speakers, 12 LPC cepstrum channels,
    7 to 29 frames, zero-padded in front to 29."""
    return _problem("JapaneseVowels")


def basic_motions(spec):
    """BasicMotions: 40 train / 40 test smartwatch recordings, 6 channels (accelerometer and
    gyroscope) x 100 steps; standing, walking, running, badminton."""
    return _problem("BasicMotions")


def gunpoint(spec):
    """GunPoint: 50 train / 150 test hand-position series of 150 steps; gun drawn or pointed."""
    return _problem("GunPoint")
