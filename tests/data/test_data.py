"""Data loading and splits: deterministic for a seed, calibration from train only, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.data import load_dataset
from edgekit.errors import DataError
from edgekit.recipe.schema import DataSpec


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
    path.write_text("a,label\n1,0\nhello,1\n2,0\n3,1\n4,0\n")
    with pytest.raises(DataError, match=r'd.csv: 1 problem\(s\) .*line 3 column "a": \'hello\' is not a number.*'
                                        r"correct them \(a decimal comma\? a unit\?\) or drop those lines"):
        load_dataset(_spec(source="csv", path=path), seed=0, calibration_samples=8)


def test_csv_problems_come_all_at_once_at_the_file_lines_with_the_fix_per_column(tmp_path):
    """A categorical column, an empty cell, NaN written out, a short row and a blank line: one
    error names each at the line of the file (blank lines counted), and the fix per column."""
    rows = ["area,district,rooms,price"] + [f"{50 + i},{'west' if i % 2 else 'east'},{i % 5},{100 + i}" for i in range(30)]
    rows[4] = "80,west,,190"  # line 5: an empty cell
    rows[9] = "NaN,east,3,120"  # line 10
    rows[12] = "61,east,2"  # line 13: a column short
    rows.append("nan,west,1,99")  # line 33 of the file: the blank line written below counts
    path = tmp_path / "house.csv"
    path.write_text("\n".join(rows[:20] + [""] + rows[20:]) + "\n")  # a blank line: line 21
    with pytest.raises(DataError) as error:
        load_dataset(_spec(source="csv", path=path), seed=0, calibration_samples=8, task="regression")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: 5 problem(s) in 31 data line(s)")
    assert 'column "district": text on 30 of 31 lines (line 2: \'east\')' in message  # once, not once per line
    for part in ('line 5 column "rooms": empty: a missing value', 'line 10 column "area": \'NaN\': a missing value',
                 "line 13: 3 columns, the header has 4", 'line 33 column "area": \'nan\': a missing value',
                 'feature column "district" holds text (\'east\', \'west\'): a categorical column; one-hot encode it',
                 'feature column "area" has 2 missing value(s) (lines 10, 33): impute them',
                 "1 line(s) (line 13) have another number of columns"):
        assert part in message, part


def test_csv_lists_the_first_ten_problems_and_counts_the_rest(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{'' if i < 14 else i},{i % 2}\n" for i in range(40)))
    with pytest.raises(DataError, match=r"gaps.csv: 14 problem\(s\) in 40 data line\(s\) .*\(first 10\): line 2 "
                                        r".*line 11 column \"b\": empty: a missing value; and 4 more\. To fix: "
                                        r"feature column \"b\" has 14 missing value\(s\) \(lines 2, 3, 4, 5, 6, \.\.\.\)"):
        load_dataset(_spec(source="csv", path=path), seed=0, calibration_samples=8)


def test_nan_in_an_npz_is_counted_whole_and_named_by_the_file_index(tmp_path):
    """Both NaN values are counted (not the one that landed in the train split) and named by
    their index in the file's array, not by a position after the split."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    x[175, 1] = x[12, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, 2, 200))
    with pytest.raises(DataError, match=r"^d.npz array x: 2 NaN or infinite values \(2 NaN\) in 2 sample\(s\): "
                                        r"sample 12, sample 175 \(indexes in d.npz array x;"):
        load_dataset(_spec(source="npz", path=tmp_path / "d.npz"), seed=0, calibration_samples=8)


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
