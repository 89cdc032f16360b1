"""User data files: .npz arrays and .csv tables."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from edgekit.errors import DataError


def read_npz(path: Path, spec, task: str = "classification") -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays x_train, y_train, x_test, y_test (optionally x_val, y_val), or x, y; string
    labels (classification only) become class ids, and their names are returned."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: _member(npz, k) for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as .npz ({exc}); write it with numpy.savez(path, x=..., y=...)") from None
    arrays = named_arrays(arrays, path)
    layouts = [("x_train", "y_train", "x_test", "y_test"), ("x", "y")]
    from edgekit.tasks import TASKS

    label_free = not TASKS[task].needs_labels
    if label_free:  # fidelity: sample inputs only; any y in the file is ignored
        layouts = [("x_train", "x_test"), ("x",)]
    for keys in layouts:
        if all(k in arrays for k in keys):
            picked = {k: arrays[k] for k in keys}
            validation = ("x_val",) if label_free else ("x_val", "y_val")
            if all(k in arrays for k in validation):
                picked.update({k: arrays[k] for k in validation})
            names = _string_labels(picked) if task == "classification" else []
            for k, v in picked.items():  # x arrays of real numbers are float32 already (_member)
                for field, member in ([(f"{k}_{f}", v[f]) for f in v.dtype.names] if v.dtype.names else [(k, v)]):
                    if not (np.issubdtype(member.dtype, np.number) or member.dtype == np.bool_) or np.iscomplexobj(member):
                        raise DataError(f"{path}: array {field} has dtype {member.dtype}; expected real numbers"
                                        + (" (or strings, for class labels)" if k.startswith("y") and task == "classification" else ""))
            return picked, names
    found = ", ".join(sorted(arrays)) or "no arrays"
    if label_free:
        raise DataError(f"{path}: expected an array x of sample inputs (or x_train and x_test), found: {found}; "
                        "save them with numpy.savez(path, x=inputs)")
    raise DataError(
        f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y), found: {found}; "
        "save them with numpy.savez(path, x=features, y=labels)"
    )


def _member(npz, key: str) -> np.ndarray:
    """One array of an open npz; a feature array (x...) of real numbers becomes float32 as it is
    read, so a large file's features are never held in their own dtype and in float32 at once
    (other dtypes stay as they are, for read_npz's checks to name). One input of several
    (``x_train_<input>``) keeps an integer dtype: token ids or categories beside float features."""
    value = npz[key]
    if key.startswith("x") and (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_) and not np.iscomplexobj(value):
        if split_key(key)[1] and np.issubdtype(value.dtype, np.integer):
            return value.astype(np.int64, copy=False)
        with np.errstate(over="ignore"):  # overflow becomes inf, which the data checks name
            value = value.astype(np.float32, copy=False)
    return value


#: the splits an npz names its arrays by (x, x_train, x_test, x_val; the same for y)
SPLITS = ("train", "test", "val")


def split_key(key: str) -> tuple[str, str]:
    """An npz key as (array, model tensor name): ``x_train`` -> ("x_train", ""),
    ``x_train_image`` -> ("x_train", "image"), ``x_image`` -> ("x", "image"), ``y_box`` -> ("y", "box")."""
    head, _, rest = key.partition("_")
    if head not in ("x", "y") or not rest:
        return key, ""
    split, _, name = rest.partition("_")
    if split in SPLITS:
        return f"{head}_{split}", name
    return head, rest


def named_arrays(arrays: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """Arrays named after a model's inputs and outputs (``x_train_<input>``, ``y_test_<output>``,
    or ``x_<input>``, ``y_<output>``) joined into one structured array per split, one field per
    name (``edgekit.runtimes.join_fields``: how edgekit holds several inputs or outputs); every
    other array as it is. An array named plainly (``x_train``, ``y``) wins over named ones.

    Raises:
        DataError: the named arrays of one split differ in length, or the splits name
            different inputs (the names of each are listed).
    """
    from edgekit.runtimes import join_fields

    groups: dict[str, list[tuple[str, str]]] = {}
    for key in arrays:
        head, name = split_key(key)
        if name and head not in arrays:
            groups.setdefault(head, []).append((name, key))
    if not groups:
        return arrays
    out = {k: v for k, v in arrays.items() if not any(k in [key for _, key in members] for members in groups.values())}
    for head, members in groups.items():
        lengths = {key: len(arrays[key]) if arrays[key].ndim else 0 for _, key in members}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{path}: the arrays of {head} differ in length ({', '.join(f'{k} {n}' for k, n in lengths.items())}); "
                            "expected one entry per sample in each")
        for _, key in members:
            if arrays[key].ndim == 0:
                raise DataError(f"{key}: expected an array with one entry per sample, received a single value")
        out[head] = join_fields([(name, arrays[key]) for name, key in members])
    for kind, what in (("x", "input"), ("y", "output")):  # every split names the same inputs, and labels the same outputs
        named = {head: sorted(out[head].dtype.names) for head in out if head.split("_")[0] == kind and out[head].dtype.names}
        if len({tuple(v) for v in named.values()}) > 1:
            shown = "; ".join(f"{head}: {', '.join(v)}" for head, v in named.items())
            raise DataError(f"{path}: the splits name different {what}s ({shown}); expected the same "
                            f"{kind}_<split>_<{what}> arrays in every split")
    return out


def read_csv(path: Path, spec, task: str = "classification") -> tuple[dict[str, np.ndarray], list[str]]:
    """A header row, numeric feature columns and one label column (classes, or a number for regression).

    Every cell is read before anything is refused: the error lists the problems of the whole
    file at once (``csv_problems.describe``: file line, column, value and the fix per column).
    """
    from edgekit.data.csv_problems import Problem, describe, number

    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            # (line of the file, row): a quoted field may span lines, a blank line is skipped
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc}); expected a UTF-8 text file with a header row") from None
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one data row, found {len(rows)} rows")
    (_, header), body = rows[0], [(line, r) for line, r in rows[1:] if r]
    if not any(name.strip() for name in header):
        raise DataError(f"{path}: the first row is empty; expected a header row naming the columns")
    from edgekit.tasks import TASKS

    if not TASKS[task].needs_labels and not spec.label_column:
        label = None  # fidelity: every column is a feature unless data.label_column names one to leave out
    else:
        label = spec.label_column or header[-1]
    if label is not None and label not in header:
        from edgekit.errors import did_you_mean

        raise DataError(f'{path}: label column "{label}" not in the header{did_you_mean(label, header)}; '
                        f'set data.label_column to one of: {", ".join(header)}')
    label_index = header.index(label) if label is not None else -1
    regression = task == "regression"
    problems: list[Problem] = []
    features, labels = [], []
    for line, row in body:
        if len(row) != len(header):
            problems.append(Problem(line, None, "columns", str(len(row)), expected=len(header)))
            continue
        values = []
        for i, text in enumerate(row):
            if i == label_index and not regression:
                if not text.strip():  # a class needs a name; any other text names one
                    problems.append(Problem(line, header[i], "missing", text, label=True))
                continue
            value, kind = number(text)
            if kind is not None:
                problems.append(Problem(line, header[i], kind, text, label=i == label_index))
            if i != label_index:
                values.append(value)
        features.append(values)
        if label_index >= 0:
            labels.append(row[label_index])
    if problems:
        raise DataError(describe(path, problems, len(body)))
    x = np.asarray(features, dtype=np.float32)
    if label is None:
        return {"x": x}, []
    if regression:
        return {"x": x, "y": np.asarray([float(v) for v in labels], dtype=np.float32)}, [label]
    y, class_names = class_ids(labels)
    return {"x": x, "y": y}, class_names


def class_names_of(values) -> list[str]:
    """The distinct label values in class-id order: numbers first, in numeric order, then the
    rest alphabetically. Every reader orders string labels this way, so one dataset gives the
    same ids whatever file kind it comes in."""
    return sorted(set(values), key=lambda v: (not _is_float(v), float(v) if _is_float(v) else 0.0, v))


def class_ids(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """(int64 class id per label, class names in id order) for string labels (``class_names_of``)."""
    names = class_names_of(labels)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in labels], dtype=np.int64), names


def _string_labels(arrays: dict[str, np.ndarray]) -> list[str]:
    """Replace string label arrays by class ids (in place); returns the class names in id order.

    The names are sorted as the csv reader sorts them, so one dataset gives the same ids in
    either file kind; every y array shares the one table.
    """
    labels = {k: v for k, v in arrays.items() if k.startswith("y") and v.dtype.kind in "US"}
    if not labels:
        return []
    values = class_names_of(str(v) for array in labels.values() for v in array.reshape(-1))
    index = {name: i for i, name in enumerate(values)}
    for key, array in labels.items():
        arrays[key] = np.array([index[str(v)] for v in array.reshape(-1)], dtype=np.int64).reshape(array.shape)
    return values


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
