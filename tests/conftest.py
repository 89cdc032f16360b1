"""Shared fixtures: tiny recipes, a tiny trained model, and GPU skipping."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own stage cache, never the user's ~/.cache/edgekit."""
    os.environ["EDGEKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgekit-cache"))

TINY_RECIPE = """
name: tiny
seed: 3
data:
  source: digits
model:
  arch: mlp
  params: {hidden: [96]}
train:
  epochs: 8
  batch_size: 32
  learning_rate: 0.01
quantize:
  calibration_samples: 64
benchmark:
  warmup: 2
  runs: 20
  inputs: 4
"""


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe file from YAML text (dedented) and return its path."""

    def write(text: str = TINY_RECIPE, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(scope="session")
def digits():
    """sklearn digits as float32 (N, 8, 8, 1) images in [0, 1] with int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[..., None], d.target.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_model(digits):
    """A small tf_keras CNN (about 10k parameters, enough that weights outweigh graph
    overhead in every format) trained a few epochs on digits."""
    import tf_keras as keras

    x, y = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:1400], y[:1400], epochs=15, batch_size=32, verbose=0)
    return model


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items):
        return
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return
    skip = pytest.mark.skip(reason="no GPU visible to TensorFlow")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
