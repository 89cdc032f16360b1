"""Datasets: load, split deterministically, normalise, and draw the calibration subset.

Sources are builtin offline datasets (shipped inside installed packages) or user files
(npz, csv). Everything here is numpy; nothing needs the network.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgekit.errors import DataError

FILE_SOURCES = ("npz", "csv")


def _load_digits(spec) -> tuple[dict[str, np.ndarray], list[str]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 grey images with values 0..16; scale to [0, 1] and add a channel axis.
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    return {"x": x, "y": digits.target.astype(np.int64)}, [str(c) for c in digits.target_names]


def _generate_gratings32(spec) -> tuple[dict[str, np.ndarray], list[str]]:
    """3000 generated 32x32x3 images: the class is the orientation of a noisy colour grating.

    A CIFAR-sized stand-in that needs no download: 10 orientations 18 degrees apart, random
    spatial frequency, phase and colour per image, and Gaussian pixel noise (sigma 0.35), so a
    small CNN must really learn oriented filters. Generated with a fixed seed: always the
    same 3000 images.
    """
    rng = np.random.default_rng(20260101)
    n, size, classes = 3000, 32, 10
    y = np.arange(n) % classes
    angle = y * np.pi / classes + rng.normal(0, 0.05, n)
    freq = rng.uniform(0.15, 0.45, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    proj = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
    wave = 0.5 + 0.5 * np.sin(freq[:, None, None] * proj + phase[:, None, None])
    colour = rng.uniform(0.3, 1.0, (n, 1, 1, 3))
    x = wave[..., None] * colour + rng.normal(0, 0.35, (n, size, size, 3))
    return {"x": np.clip(x, 0, 1).astype(np.float32), "y": y.astype(np.int64)}, [f"{d * 18}deg" for d in range(classes)]


BUILTIN_DATASETS: dict[str, Callable[[Any], tuple[dict[str, np.ndarray], list[str]]]] = {
    "digits": _load_digits,
    "gratings32": _generate_gratings32,
}


@dataclass
class Dataset:
    """Train/val/test splits plus the calibration subset, all float32 features, int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_calib: np.ndarray
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_dataset(spec, seed: int, calibration_samples: int) -> Dataset:
    """Load the recipe's data section and split it.

    Args:
        spec: the recipe's ``data`` section.
        seed: the recipe seed; the same seed always gives the same splits.
        calibration_samples: how many training samples to draw for int8 calibration.
    """
    info: dict[str, Any] = {"source": spec.source}
    if spec.source in FILE_SOURCES:
        path = Path(spec.path)
        if not path.is_file():
            raise DataError(f"data.path: file not found: {path}; check the path (relative paths start at the recipe's folder)")
        info["path"] = str(path)
        info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        arrays, class_names = (_read_npz if spec.source == "npz" else _read_csv)(path, spec)
    else:
        arrays, class_names = BUILTIN_DATASETS[spec.source](spec)

    arrays = {k: v for k, v in arrays.items()}
    for key in [k for k in arrays if k.startswith("y")]:
        arrays[key] = _as_class_ids(arrays[key], key)
    if "x" in arrays:
        _check_pair(arrays["x"], arrays["y"], "x", "y")
        class_names = class_names or _class_names(arrays["y"])
        x_train, x_test, y_train, y_test = _split(arrays["x"], arrays["y"], spec.test_fraction, seed)
    else:
        x_train, y_train, x_test, y_test = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        _check_pair(x_train, y_train, "x_train", "y_train")
        _check_pair(x_test, y_test, "x_test", "y_test")
        class_names = class_names or _class_names(np.concatenate([y_train, y_test]))
    if "x_val" in arrays:
        x_val, y_val = arrays["x_val"], arrays["y_val"]
    elif spec.val_fraction > 0:
        x_train, x_val, y_train, y_val = _split(x_train, y_train, spec.val_fraction, seed + 1)
    else:
        x_val, y_val = x_train[:0], y_train[:0]

    x_train, x_val, x_test, info["normalize"] = _normalize(spec.normalize, x_train, x_val, x_test)

    rng = np.random.default_rng(seed)
    n_calib = min(calibration_samples, len(x_train))
    calib_idx = np.sort(rng.choice(len(x_train), size=n_calib, replace=False))
    info["splits"] = {"train": len(x_train), "val": len(x_val), "test": len(x_test)}
    info["calibration"] = {"source": "train", "size": int(n_calib), "requested": int(calibration_samples), "seed": seed}
    info["input_shape"] = list(x_train.shape[1:])
    info["num_classes"] = len(class_names)
    return Dataset(
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
        x_calib=x_train[calib_idx], class_names=class_names, info=info,
    )


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    # Stratify when every class can appear on both sides; tiny sets fall back to shuffling.
    stratify = y if counts[counts > 0].min() >= 2 and round(len(y) * fraction) >= len(counts[counts > 0]) else None
    return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=stratify)


def _read_npz(path: Path, spec) -> tuple[dict[str, np.ndarray], list[str]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as .npz ({exc}); write it with numpy.savez(path, x=..., y=...)") from None
    layouts = [("x_train", "y_train", "x_test", "y_test"), ("x", "y")]
    for keys in layouts:
        if all(k in arrays for k in keys):
            picked = {k: arrays[k] for k in keys}
            if "x_val" in arrays and "y_val" in arrays:
                picked.update(x_val=arrays["x_val"], y_val=arrays["y_val"])
            for k, v in picked.items():
                if not np.issubdtype(v.dtype, np.number):
                    raise DataError(f"{path}: array {k} has dtype {v.dtype}; expected numbers")
                picked[k] = v.astype(np.float32) if k.startswith("x") else v
            return picked, []
    found = ", ".join(sorted(arrays)) or "no arrays"
    raise DataError(
        f"{path}: expected arrays x_train, y_train, x_test, y_test (or x, y), found: {found}; "
        "save them with numpy.savez(path, x=features, y=labels)"
    )


def _read_csv(path: Path, spec) -> tuple[dict[str, np.ndarray], list[str]]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc}); expected a UTF-8 text file with a header row") from None
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one data row, found {len(rows)} rows")
    header, body = rows[0], [r for r in rows[1:] if r]
    label = spec.label_column or header[-1]
    if label not in header:
        from edgekit.errors import did_you_mean

        raise DataError(f'{path}: label column "{label}" not in the header{did_you_mean(label, header)}; set data.label_column to one of: {", ".join(header)}')
    label_index = header.index(label)
    features = []
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} columns like the header, found {len(row)}")
        try:
            features.append([float(v) for i, v in enumerate(row) if i != label_index])
        except ValueError:
            bad = next(v for i, v in enumerate(row) if i != label_index and not _is_float(v))
            raise DataError(f"{path}:{line}: feature value {bad!r} is not a number; feature columns must be numeric") from None
    labels = [row[label_index] for row in body]
    class_names = sorted(set(labels), key=lambda v: (not _is_float(v), float(v) if _is_float(v) else 0.0, v))
    index = {name: i for i, name in enumerate(class_names)}
    y = np.array([index[v] for v in labels], dtype=np.int64)
    return {"x": np.asarray(features, dtype=np.float32), "y": y}, class_names


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _as_class_ids(y: np.ndarray, name: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise DataError(f"{name}: expected one class label per sample (shape [N]), received shape {list(y.shape)}")
    if not np.all(np.mod(y, 1) == 0) or (y < 0).any():
        raise DataError(f"{name}: expected integer class ids >= 0 for classification, received values like {y[:3].tolist()}")
    return y.astype(np.int64)


def _class_names(y: np.ndarray) -> list[str]:
    return [str(i) for i in range(int(y.max()) + 1)]


def _check_pair(x: np.ndarray, y: np.ndarray, xname: str, yname: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{xname} has {len(x)} samples but {yname} has {len(y)}; they must match")
    if x.ndim < 2:
        raise DataError(f"{xname}: expected shape [samples, features...], received shape {list(x.shape)}")


def _normalize(kind: str, x_train, x_val, x_test):
    if kind == "none":
        return x_train, x_val, x_test, {"kind": "none"}
    axes = 0  # per feature, statistics from the training split only
    if kind == "standard":
        shift = x_train.mean(axis=axes)
        scale = x_train.std(axis=axes)
    else:
        shift = x_train.min(axis=axes)
        scale = x_train.max(axis=axes) - shift
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    apply = lambda x: ((x - shift) / scale).astype(np.float32)  # noqa: E731
    return apply(x_train), apply(x_val), apply(x_test), {"kind": kind, "fitted_on": "train"}
