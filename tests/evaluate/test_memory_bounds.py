"""Memory follows the model, not the data: batch sizes, per-layer error samples and the validation
samples the workers get are bounded by bytes, and a data file is hashed and read without a second
full copy (issue 16: a 224x224 MobileNetV2 baseline in batches of 256 needed 12 GB for 128 images).

No timing here: the costs at real size are measured by benchmarks/real_size.py.
"""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
import pytest

from edgekit.cache import file_sha256
from edgekit.convert import BATCH_BYTES, activation_bytes, batch_size
from edgekit.data.files import read_npz
from edgekit.evaluate.layer_error import LAYER_BYTES, SAMPLES, sample_count
from edgekit.evaluate.worker import validation_cap


@pytest.fixture(scope="module")
def keras():
    import tf_keras

    return tf_keras


@pytest.fixture(scope="module")
def big(keras):
    """MobileNetV2 alpha 1.0 at 224x224x3 (random weights, offline): 87 MB of layer outputs a sample."""
    return keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, weights=None, classes=10)


@pytest.fixture(scope="module")
def tiny(keras):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    return keras.Model(inputs, outputs)


def test_activation_bytes_counts_every_layer_output(keras, tiny):
    # input 8*8*1, conv 6*6*4, flatten 144, dense 3: float32
    assert activation_bytes(tiny) == 4 * (64 + 144 + 144 + 3)


def test_batch_is_bounded_for_a_big_model_and_256_for_a_tiny_one(big, tiny):
    assert activation_bytes(big) > 50e6  # the layer outputs of one 224x224 image
    n = batch_size(big)
    assert 1 <= n <= 8 and n * activation_bytes(big) <= BATCH_BYTES
    assert batch_size(tiny) == 256
    assert batch_size(big, budget=1) == 1  # never 0


def test_predict_in_chosen_batches_gives_the_same_outputs(tiny):
    from edgekit.train.fit import predict

    x = np.random.default_rng(0).normal(size=(300, 8, 8, 1)).astype(np.float32)
    assert np.array_equal(predict(tiny, x), predict(tiny, x, batch_size=256))
    assert predict(tiny, x, batch_size=7).shape == (300, 3)


def test_layer_error_samples_are_bounded_by_bytes(big, tiny):
    x_big = np.zeros((SAMPLES, 224, 224, 3), np.float32)
    n = sample_count(big, x_big)
    assert 1 <= n <= 4 and n * activation_bytes(big) <= LAYER_BYTES
    assert sample_count(tiny, np.zeros((500, 8, 8, 1), np.float32)) == SAMPLES


def test_validation_samples_for_the_workers_are_bounded_by_bytes():
    from edgekit.convert.mixed import RANK_SAMPLES
    from edgekit.data import VALIDATION_CAP

    assert validation_cap(np.zeros((0, 224, 224, 3), np.float32)) == 445
    assert validation_cap(np.zeros((0, 2048, 2048, 3), np.float32)) == RANK_SAMPLES
    assert validation_cap(np.zeros((0, 32, 32, 3), np.float32)) == VALIDATION_CAP


def test_a_data_file_is_hashed_in_blocks(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8).tobytes())
    tracemalloc.start()
    try:
        digest = file_sha256(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert peak < 3 << 20  # blocks of 1 MiB, never the 8 MiB file


def test_npz_features_are_not_held_twice(tmp_path):
    """Each x array becomes float32 as it is read: the peak is the float32 arrays plus one array
    in the file's dtype, not all of them in both dtypes."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(64, 128, 128)), "x_test": rng.normal(size=(64, 128, 128)),  # float64, 8 MiB each
              "y_train": np.arange(64) % 2, "y_test": np.arange(64) % 2}
    np.savez(tmp_path / "d.npz", **arrays)
    tracemalloc.start()
    try:
        read, names = read_npz(tmp_path / "d.npz", None, "classification")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    float32_total = sum(read[k].nbytes for k in ("x_train", "x_test"))  # 8 MiB
    assert read["x_train"].dtype == np.float32
    assert np.array_equal(read["x_test"], arrays["x_test"].astype(np.float32))
    assert names == []
    assert peak < float32_total + arrays["x_train"].nbytes + (2 << 20)  # 8 + 8 + 2 MiB, not 16 + 8
