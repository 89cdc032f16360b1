"""Checks on the data before anything is trained or allocated from it.

Each check raises ``DataError`` with one line that names the array and says what was expected,
so a bad file stops the build in a second instead of training to ``loss nan``, allocating a
class name per integer up to a label of 10^9, or failing after training with a shape error.
"""

from __future__ import annotations

import numpy as np

from edgekit.errors import DataError

#: more classes than any classifier edgekit can train and deploy to an edge device
MAX_CLASSES = 100_000


def check_samples_axis(array: np.ndarray, name: str) -> None:
    """An array with a first (samples) axis; a 0-d array has no length at all."""
    if array.ndim == 0:
        raise DataError(f"{name}: expected an array with one entry per sample, received a single value")
    if np.iscomplexobj(array):
        raise DataError(f"{name}: expected real numbers, received dtype {array.dtype}; keep the real part or split it into features")


def check_finite(array: np.ndarray, name: str, what: str = "values") -> None:
    """No NaN or infinity (also what a float64 beyond float32's range becomes when cast); each
    field of a model's several inputs (``x_train_<input>``) on its own. The error counts every
    one and names the first SHOWN samples holding one, by their index in ``name`` (called on a
    file's own arrays before they are split: the file's indexes)."""
    if array.dtype.names:
        for field in array.dtype.names:
            check_finite(array[field], f"{name}_{field}", what)
        return
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count:
        rows = np.flatnonzero(bad.reshape(len(array), -1).any(axis=1)) if array.ndim else np.zeros(1, int)
        nan = int(np.isnan(array).sum())
        kinds = " and ".join(part for part in (f"{nan} NaN" if nan else "", f"{count - nan} infinite" if count - nan else "")
                             if part)
        shown = ", ".join(f"sample {i}" for i in rows[:SHOWN]) + (f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else "")
        raise DataError(f"{name}: {count} NaN or infinite {what} ({kinds}) in {len(rows)} sample(s): {shown} (indexes "
                        f"in {name}; values beyond about 3.4e38 overflow float32); drop or impute them before building")


#: how many samples an error lists one by one
SHOWN = 10


def check_class_ids(y: np.ndarray, name: str) -> None:
    """Class ids small enough that a class table can be made from them."""
    if len(y) and int(y.max()) >= MAX_CLASSES:
        present = len(np.unique(y))
        raise DataError(f"{name}: class ids go up to {int(y.max())} but only {present} distinct values are present; "
                        f"expected ids 0..K-1 with K <= {MAX_CLASSES:,}: map the labels to consecutive ids "
                        "(or use string labels in a csv)")


def check_splits(splits: dict[str, tuple[np.ndarray, np.ndarray]], regression: bool = False) -> None:
    """Train and test hold samples, every split has train's sample shape, and all values are finite.

    Args:
        splits: ``{"train": (x, y), "test": (x, y)}``, optionally ``"val"``.
        regression: the targets are numbers, checked for NaN and infinity too.
    """
    x_train = splits["train"][0]
    for split in ("train", "test"):
        if len(splits[split][0]) == 0:
            raise DataError(f"x_{split}: no samples; the {split} split needs at least one (check the file's "
                            f"x_{split} or data.test_fraction)")
    for field, shape in sample_shapes(x_train).items():
        if 0 in shape:
            raise DataError(f"x_train{field}: samples of shape {list(shape)} hold no values; expected at least one "
                            "feature per sample")
    for split, (x, y) in splits.items():
        if len(x) != len(y):
            raise DataError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}; expected one label per sample")
        if len(x) and sample_shapes(x) != sample_shapes(x_train):
            raise DataError(f"x_{split}: samples of shape {_shown(x)}, but x_train's are {_shown(x_train)}; "
                            "every split must have the same sample shape (and the same inputs)")
        check_finite(x, f"x_{split}")
        if regression:
            check_finite(y, f"y_{split}", "targets")


def sample_shapes(x: np.ndarray) -> dict[str, tuple]:
    """{"": the sample shape} of a plain array; {"_<input>": its shape} per field of a model's
    several inputs (a structured array: ``x_train_image``, ``x_train_meta``)."""
    if x.dtype.names:
        return {f"_{name}": tuple(x.dtype[name].shape) for name in x.dtype.names}
    return {"": tuple(x.shape[1:])}


def _shown(x: np.ndarray) -> str:
    shapes = sample_shapes(x)
    if list(shapes) == [""]:
        return str(list(shapes[""]))
    return "{" + ", ".join(f"{k[1:]}: {list(v)}" for k, v in shapes.items()) + "}"


def check_classes(y_train: np.ndarray, num_classes: int) -> None:
    """A classifier can be trained: two classes or more, and every class id has a training sample."""
    present = np.unique(y_train)
    if len(present) < 2:
        raise DataError(f"y_train: every training sample has class {present[0] if len(present) else '-'}; "
                        "classification needs at least two classes: add samples of the others or check the label column")
    missing = sorted(set(range(num_classes)) - set(present.tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"y_train: class id(s) {shown} of 0..{num_classes - 1} have no training sample; "
                        "the model cannot learn them: add samples, or map the labels to consecutive ids")


def check_class_names(names: list[str]) -> None:
    """Class names that labels.txt (one name per line, in index order) can hold without shifting
    an index: no line breaks, none empty."""
    for index, name in enumerate(names):
        if not str(name).strip() or any(c in str(name) for c in "\r\n"):
            raise DataError(f"y: class {index} is named {str(name)!r}; expected a non-empty name without a line break "
                            "(labels.txt holds one name per line): fix the label values")
