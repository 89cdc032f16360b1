"""Data loading and splits: deterministic for a seed, calibration from train only, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import DataError
from edgekit.recipe import DataSpec


def _spec(**kw):
    return DataSpec(**kw)


def test_digits_splits_are_deterministic_for_a_seed():
    a = load_dataset(_spec(), seed=1, calibration_samples=50)
    b = load_dataset(_spec(), seed=1, calibration_samples=50)
    c = load_dataset(_spec(), seed=2, calibration_samples=50)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.x_calib, b.x_calib)
    assert not np.array_equal(a.y_test, c.y_test)
    assert a.input_shape == (8, 8, 1) and a.num_classes == 10
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797


def test_splits_are_disjoint():
    d = load_dataset(_spec(), seed=0, calibration_samples=10)
    train = {x.tobytes() for x in d.x_train}
    test = {x.tobytes() for x in d.x_test}
    val = {x.tobytes() for x in d.x_val}
    # digits has a few duplicate images; allow those, but the splits must not share rows wholesale.
    assert len(train & test) < 5 and len(train & val) < 5


def test_calibration_comes_from_train_split_and_is_recorded():
    d = load_dataset(_spec(), seed=0, calibration_samples=40)
    train = {x.tobytes() for x in d.x_train}
    assert len(d.x_calib) == 40
    assert all(x.tobytes() in train for x in d.x_calib)
    assert d.info["calibration"] == {"source": "train", "size": 40, "requested": 40, "seed": 0}


def test_calibration_larger_than_train_is_capped_and_says_so():
    d = load_dataset(_spec(), seed=0, calibration_samples=100_000)
    assert d.info["calibration"]["size"] == len(d.x_train) < d.info["calibration"]["requested"]


def test_npz_with_x_y_is_split(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(200, 5)), y=rng.integers(0, 3, 200))
    d = load_dataset(_spec(source="npz", path=path, test_fraction=0.25, val_fraction=0.0), seed=0, calibration_samples=8)
    assert len(d.x_test) == 50 and len(d.x_train) == 150 and len(d.x_val) == 0
    assert d.x_train.dtype == np.float32 and d.num_classes == 3
    assert len(d.info["sha256"]) == 64


def test_npz_with_own_test_split_keeps_it(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    x_test = rng.normal(size=(30, 4)).astype(np.float32)
    np.savez(path, x_train=rng.normal(size=(100, 4)), y_train=rng.integers(0, 2, 100), x_test=x_test, y_test=rng.integers(0, 2, 30))
    d = load_dataset(_spec(source="npz", path=path), seed=0, calibration_samples=8)
    np.testing.assert_array_equal(d.x_test, x_test)


def test_npz_without_needed_arrays(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"expected arrays x_train, y_train, x_test, y_test \(or x, y\), found: features"):
        load_dataset(_spec(source="npz", path=path), seed=0, calibration_samples=8)


def test_corrupt_npz(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="cannot read as .npz"):
        load_dataset(_spec(source="npz", path=path), seed=0, calibration_samples=8)


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_dataset(_spec(source="csv", path=tmp_path / "none.csv"), seed=0, calibration_samples=8)


def test_csv_with_string_labels(tmp_path):
    path = tmp_path / "d.csv"
    rows = ["a,b,kind"] + [f"{i},{i % 7},{'cat' if i % 2 else 'dog'}" for i in range(60)]
    path.write_text("\n".join(rows) + "\n")
    d = load_dataset(_spec(source="csv", path=path, label_column="kind"), seed=0, calibration_samples=8)
    assert d.class_names == ["cat", "dog"]
    assert d.input_shape == (2,)
    x = np.concatenate([d.x_train, d.x_val, d.x_test])
    y = np.concatenate([d.y_train, d.y_val, d.y_test])
    np.testing.assert_array_equal(y, (x[:, 0] % 2 == 0).astype(int))  # dog = even rows


def test_csv_bad_value_names_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label\n1,0\nhello,1\n")
    with pytest.raises(DataError, match=r"d.csv:3: feature value 'hello' is not a number"):
        load_dataset(_spec(source="csv", path=path), seed=0, calibration_samples=8)


def test_csv_unknown_label_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,label\n1,0\n2,1\n")
    with pytest.raises(DataError, match='label column "lable" not in the header \\(did you mean "label"\\?\\)'):
        load_dataset(_spec(source="csv", path=path, label_column="lable"), seed=0, calibration_samples=8)


def test_standardize_uses_train_statistics_only(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(5.0, 3.0, size=(400, 3)), y=rng.integers(0, 2, 400))
    d = load_dataset(_spec(source="npz", path=path, normalize="standard"), seed=0, calibration_samples=8)
    np.testing.assert_allclose(d.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(d.x_train.std(axis=0), 1.0, atol=1e-4)
    assert np.abs(d.x_test.mean(axis=0)).max() > 1e-4  # test statistics were not used
