"""Builtin datasets: shapes, classes and splits per task, deterministic, offline, clear errors."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.data import BUILTIN_DATASETS, load_dataset
from edgekit.errors import DataError
from edgekit.recipe.schema import DataSpec


def _load(source, task="classification", seed=0, **kw):
    return load_dataset(DataSpec(source=source, **kw), seed=seed, calibration_samples=16, task=task)


# source -> (task, sample shape, classes, total samples (train + val + test), test samples or None)
EXPECTED = {
    "digits": ("classification", (8, 8, 1), 10, 1797, None),
    "mnist5000": ("classification", (28, 28, 1), 10, 5000, None),
    "gratings32": ("classification", (32, 32, 3), 10, 3000, None),
    "gratings96": ("classification", (96, 96, 3), 10, 1200, None),
    "breast_cancer": ("classification", (30,), 2, 569, None),
    "wine": ("classification", (13,), 3, 178, None),
    "diabetes": ("regression", (10,), 1, 442, None),
    "japanese_vowels": ("classification", (29, 12), 9, 640, 370),
    "basic_motions": ("classification", (100, 6), 4, 80, 40),
    "gunpoint": ("classification", (150, 1), 2, 200, 150),
    "shapes32": ("segmentation", (32, 32, 1), 4, 1200, None),
}


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_builtin_shapes_classes_and_sizes(source):
    task, shape, classes, total, test = EXPECTED[source]
    assert BUILTIN_DATASETS[source].task == task
    d = _load(source, task)
    assert d.input_shape == shape and d.num_classes == classes
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == total
    if test is not None:  # the archive's own test split is kept as it is
        assert len(d.x_test) == test
    assert d.x_train.dtype == np.float32 and np.isfinite(d.x_train).all()
    if task == "classification":
        assert d.y_train.dtype == np.int64 and set(np.unique(np.concatenate([d.y_train, d.y_test]))) == set(range(classes))


@pytest.mark.parametrize("source", ["mnist5000", "japanese_vowels", "shapes32", "ecg_anomaly"])
def test_builtin_loading_is_deterministic(source):
    task = BUILTIN_DATASETS[source].task
    a, b = _load(source, task, seed=3), _load(source, task, seed=3)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.x_calib, b.x_calib)


def test_japanese_vowels_is_padded_in_front_so_every_series_ends_on_the_last_step():
    d = _load("japanese_vowels")
    x = np.concatenate([d.x_train, d.x_val, d.x_test])
    assert (np.abs(x[:, -1]).sum(axis=1) > 0).all()  # no series ends in padding
    assert (np.abs(x[:, 0]).sum(axis=1) == 0).sum() > 500  # most (7 to 29 frames) start with it
    assert d.class_names == [str(i) for i in range(1, 10)]


def test_per_channel_normalization_shares_statistics_over_time():
    d = _load("basic_motions", normalize="standard", normalize_per="channel")
    flat = d.x_train.reshape(-1, d.x_train.shape[-1])
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-3)
    assert d.info["normalize"]["per"] == "channel"


def test_regression_targets_stay_real_numbers():
    d = _load("diabetes", "regression")
    assert d.y_train.dtype == np.float32 and d.class_names == ["progression"]
    assert 25 <= d.y_train.min() and d.y_train.max() <= 346 and len(np.unique(d.y_train)) > 100


def test_anomaly_train_and_val_hold_normal_windows_only():
    d = _load("ecg_anomaly", "anomaly")
    assert d.input_shape == (64, 1) and d.class_names == ["normal", "anomaly"]
    assert not d.y_train.any() and not d.y_val.any()
    assert 10 < d.y_test.sum() < len(d.y_test) / 2  # anomalous windows are a minority, but there
    assert d.info["anomaly"]["test_anomalous"] == int(d.y_test.sum())


def test_anomaly_from_npz_drops_flagged_samples_from_training(tmp_path):
    rng = np.random.default_rng(0)
    y = (np.arange(200) % 5 == 0).astype(int)
    path = tmp_path / "a.npz"
    np.savez(path, x=rng.normal(size=(200, 8)), y=y)
    d = load_dataset(DataSpec(source="npz", path=path), seed=0, calibration_samples=8, task="anomaly")
    assert not d.y_train.any() and d.y_test.any()
    assert d.info["anomaly"]["dropped_from_train"] + d.info["anomaly"]["dropped_from_val"] + d.y_test.sum() == 40


def test_segmentation_masks_match_the_images():
    d = _load("shapes32", "segmentation")
    assert d.y_train.shape == (len(d.x_train), 32, 32) and d.y_train.dtype == np.int64
    assert d.class_names == ["background", "circle", "square", "triangle"]
    assert set(np.unique(d.y_train)) == {0, 1, 2, 3}
    # Shapes are brighter than the background, so mask and image agree.
    assert d.x_train[d.y_train > 0].mean() > d.x_train[d.y_train == 0].mean() + 0.3


def test_regression_csv_keeps_numeric_targets(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b,target\n" + "".join(f"{i},{i * 2},{i * 0.5}\n" for i in range(40)))
    d = load_dataset(DataSpec(source="csv", path=path, label_column="target"), seed=0, calibration_samples=4, task="regression")
    assert d.class_names == ["target"] and d.y_train.dtype == np.float32
    np.testing.assert_allclose(np.sort(np.concatenate([d.y_train, d.y_val, d.y_test])), np.arange(40) * 0.5)


def test_a_builtin_dataset_for_another_task_is_refused():
    with pytest.raises(DataError, match="data.source diabetes is a regression dataset but the recipe's task is classification"):
        _load("diabetes", "classification")


def test_regression_labels_must_be_one_row_per_sample(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, x=np.zeros((10, 2)), y=np.zeros((10, 2, 2)))
    with pytest.raises(DataError, match=r"y: expected one target per sample \(shape \[N\]\) or several \(shape \[N, targets\]\), "
                                        r"received shape \[10, 2, 2\]"):
        load_dataset(DataSpec(source="npz", path=path), seed=0, calibration_samples=4, task="regression")


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    return tmp_path / "datasets"


@pytest.mark.parametrize("source, file", [("mnist", "mnist.npz"), ("fashion_mnist", "fashion-mnist/train-images-idx3-ubyte.gz"),
                                          ("cifar10", "cifar-10-batches-py"), ("imdb", "imdb.npz")])
def test_keras_dataset_without_cache_names_the_file_to_provide(source, file, keras_home):
    with pytest.raises(DataError) as info:
        _load(source)
    message = info.value.message
    assert f"expected the cached file {keras_home / file}" in message
    assert f"keras.datasets.{source}.load_data()" in message and "data.download: true" in message
    assert "\n" not in message


def test_keras_mnist_is_read_from_the_cache(keras_home):
    rng = np.random.default_rng(0)
    np.savez(keras_home / "mnist.npz", x_train=rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
             y_train=np.arange(60) % 10, x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), y_test=np.arange(20) % 10)
    d = _load("mnist")
    assert d.input_shape == (28, 28, 1) and len(d.x_test) == 20 and d.x_train.max() <= 1.0


def test_keras_fashion_mnist_reads_idx_files(keras_home):
    folder = keras_home / "fashion-mnist"
    folder.mkdir()

    def idx(name, array):
        header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
        with gzip.open(folder / name, "wb") as f:
            f.write(header + array.astype(np.uint8).tobytes())

    idx("train-images-idx3-ubyte.gz", np.full((30, 28, 28), 255))
    idx("train-labels-idx1-ubyte.gz", np.arange(30) % 10)
    idx("t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28)))
    idx("t10k-labels-idx1-ubyte.gz", np.arange(10))
    d = _load("fashion_mnist", val_fraction=0)
    assert d.x_train.shape == (30, 28, 28, 1) and d.x_train.max() == 1.0 and list(d.y_test) == list(range(10))


def test_keras_imdb_pads_in_front_and_caps_the_vocabulary(keras_home):
    reviews = np.empty(4, dtype=object)
    reviews[:] = [[1, 5, 20000], [1] * 300, [1, 7], [1, 9999, 10000]]
    np.savez(keras_home / "imdb.npz", x_train=reviews, y_train=np.array([0, 1, 0, 1]), x_test=reviews, y_test=np.array([1, 0, 1, 0]))
    d = _load("imdb", val_fraction=0)
    assert d.input_shape == (200,)
    np.testing.assert_array_equal(d.x_test[0, -3:], [1, 5, 2])  # 20000 is past the 10000 words: out of vocabulary
    np.testing.assert_array_equal(d.x_test[3, -3:], [1, 9999, 2])
    assert d.x_test[2, 0] == 0


def _run(tmp_path, text):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    result = CliRunner().invoke(cli, ["build", str(recipe), "--out", str(tmp_path / "run")])
    return result, json.loads((tmp_path / "run" / "results.json").read_text())


def test_regression_builds_end_to_end_with_mae_lower_is_better(tmp_path):
    result, doc = _run(tmp_path, """
name: tiny_regression
task: regression
data: {source: diabetes, normalize: standard}
model: {arch: mlp, params: {hidden: [16]}}
train: {epochs: 30, batch_size: 32, learning_rate: 0.01}
quantize: {calibration_samples: 64}
export: {formats: [tflite]}
benchmark: {warmup: 2, runs: 10, inputs: 4, profile: false}
""")
    assert result.exit_code == 0, result.output
    assert doc["primary_metric"] == "mae" and doc["higher_is_better"] is False
    rows = {r["id"]: r for r in doc["rows"]}
    base = rows["keras-fp32@cpu"]["metrics"]["mae"]
    assert base < 60  # predicting the mean gives about 65; the target spans 25 to 346
    assert rows["tflite-fp32@cpu"]["metrics"]["mae"] == pytest.approx(base, rel=1e-4)
    assert rows["tflite-int8@cpu"]["metrics"]["mae"] == pytest.approx(base, abs=3)


def test_anomaly_builds_end_to_end_with_roc_auc(tmp_path):
    result, doc = _run(tmp_path, """
name: tiny_anomaly
task: anomaly
data: {source: ecg_anomaly, normalize: standard, normalize_per: channel}
model: {arch: autoencoder, params: {hidden: [32, 16], latent: 8}}
train: {epochs: 10, batch_size: 64, learning_rate: 0.005}
quantize: {calibration_samples: 64}
export: {formats: [tflite]}
benchmark: {warmup: 2, runs: 10, inputs: 4, profile: false}
""")
    assert result.exit_code == 0, result.output
    assert doc["primary_metric"] == "roc_auc" and doc["higher_is_better"] is True
    rows = {r["id"]: r for r in doc["rows"]}
    assert rows["keras-fp32@cpu"]["metrics"]["roc_auc"] > 0.9
    assert rows["tflite-int8@cpu"]["metrics"]["roc_auc"] > 0.85
    assert rows["tflite-int8@cpu"]["metrics"]["error_anomalous"] > rows["tflite-int8@cpu"]["metrics"]["error_normal"]


class _Planted:
    """A pickled object that, unpickled, creates ``marker`` (what a planted file could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _cifar_batches(folder, poisoned=None):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": b"x", b"labels": [int(v) for v in rng.integers(0, 10, 12)],
                 b"data": rng.integers(0, 256, (12, 3072)).astype(np.uint8), b"filenames": [b"a.png"] * 12}
        if poisoned is not None and name == "data_batch_3":
            batch[b"labels"] = poisoned
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)  # the archive's format (a protocol-2 pickle)


def test_keras_cifar10_batches_are_read_without_running_code(keras_home, tmp_path):
    """The batches are pickles, as Keras reads them; a planted one that would create a file is
    refused in one line and nothing runs."""
    _cifar_batches(keras_home / "cifar-10-batches-py")
    d = _load("cifar10", val_fraction=0)
    assert d.input_shape == (32, 32, 3) and len(d.x_train) == 60 and d.x_train.max() <= 1.0
    shutil.rmtree(keras_home / "cifar-10-batches-py")
    _cifar_batches(keras_home / "cifar-10-batches-py", poisoned=_Planted(tmp_path / "ran"))
    with pytest.raises(DataError) as info:
        _load("cifar10")
    assert "data_batch_3: not read (it names io.open)" in info.value.message and "\n" not in info.value.message
    assert not (tmp_path / "ran").exists()


def test_keras_imdb_object_arrays_are_read_without_running_code(keras_home, tmp_path):
    reviews = np.empty(4, dtype=object)
    reviews[:] = [[1, 5], [1, 7], _Planted(tmp_path / "ran"), [1, 9]]
    np.savez(keras_home / "imdb.npz", x_train=reviews, y_train=np.array([0, 1, 0, 1]), x_test=reviews, y_test=np.array([1, 0, 1, 0]))
    with pytest.raises(DataError) as info:
        _load("imdb")
    assert "imdb.npz: not read (it names io.open)" in info.value.message
    assert not (tmp_path / "ran").exists()
