"""Datasets: load, split deterministically, normalise, and draw the calibration subset.

Sources are builtin offline datasets (the table in ``edgekit.data.builtins``) or user files (npz,
csv). What ``y`` holds depends on the task (``edgekit.tasks``): class ids, regression targets,
anomaly flags or per-pixel masks. Everything here is numpy; nothing needs the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data import checks as data_checks
from edgekit.data.builtins import BUILTINS
from edgekit.errors import DataError

#: user data kinds: data.source -> "module:function" reading data.path (a file, or a folder for
#: images); each returns (arrays, names) like a builtin loader (see edgekit.data.builtins)
FILE_READERS = {
    "npz": "edgekit.data.files:read_npz",
    "csv": "edgekit.data.files:read_csv",
    "images": "edgekit.data.folders:read_images",
    "text": "edgekit.data.text:read_text",
}
FILE_SOURCES = tuple(FILE_READERS)
# name -> Builtin (loader, task, shape, description); see edgekit.data.builtins.
BUILTIN_DATASETS = BUILTINS


@dataclass
class Normalization:
    """Feature scaling fitted on the training split: ``(x - shift) / scale``.

    ``standard``: shift = mean, scale = std; ``minmax``: shift = min, scale = max - min (a
    zero scale becomes 1). Per feature (the shape of one sample) or per channel (the last
    axis). Both arrays are float32; ``to_dict`` lists them as exact floats.
    """

    kind: str
    per: str
    shift: np.ndarray
    scale: np.ndarray

    FORMULA = "(x - shift) / scale"

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Raw features -> what the trained model takes (float32)."""
        return ((np.asarray(x, np.float32) - self.shift) / self.scale).astype(np.float32)

    def invert(self, x: np.ndarray) -> np.ndarray:
        """What the trained model takes -> raw features (float32): ``apply`` undone."""
        return (np.asarray(x, np.float32) * self.scale + self.shift).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        # Exact float32 values as lists (JSON floats round-trip them exactly), stored once.
        names = ("mean", "std") if self.kind == "standard" else ("min", "max - min")
        return {"kind": self.kind, "per": self.per, "fitted_on": "train", "formula": self.FORMULA,
                "shift_is": names[0], "scale_is": names[1] + " (1 where it is 0)", "shape": list(self.shift.shape),
                "shift": self.shift.astype(np.float32).tolist(), "scale": self.scale.astype(np.float32).tolist()}

    @classmethod
    def from_dict(cls, record: dict | None) -> Normalization | InputNormalizations | None:
        if not record or record.get("kind", "none") == "none":
            return None
        if "inputs" in record:  # a model of several inputs: one per float input
            return InputNormalizations(record["kind"], record["per"],
                                       {name: cls.from_dict(r) for name, r in record["inputs"].items()})
        return cls(record["kind"], record["per"], np.asarray(record["shift"], np.float32),
                   np.asarray(record["scale"], np.float32))


@dataclass
class InputNormalizations:
    """The normalization of a model of several inputs: one ``Normalization`` per float input,
    fitted on its own training values; integer inputs (ids, categories) have none. It applies
    to a structured batch (one field per input) as ``Normalization`` applies to an array."""

    kind: str
    per: str
    by_input: dict[str, Normalization]

    FORMULA = Normalization.FORMULA

    def _each(self, x: np.ndarray, how: str) -> np.ndarray:
        out = np.array(x, copy=True)
        for name, norm in self.by_input.items():
            out[name] = getattr(norm, how)(x[name])
        return out

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Raw inputs -> what the trained model takes (each float input normalized)."""
        return self._each(x, "apply")

    def invert(self, x: np.ndarray) -> np.ndarray:
        return self._each(x, "invert")

    @property
    def shift(self) -> np.ndarray:
        """Every input's shift in one array (for fingerprints)."""
        return np.concatenate([n.shift.ravel() for n in self.by_input.values()]) if self.by_input else np.zeros(0, np.float32)

    @property
    def scale(self) -> np.ndarray:
        return np.concatenate([n.scale.ravel() for n in self.by_input.values()]) if self.by_input else np.zeros(0, np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "per": self.per, "fitted_on": "train", "formula": self.FORMULA,
                "inputs": {name: norm.to_dict() for name, norm in self.by_input.items()}}


#: the most validation samples the build's workers receive, for the per-layer quantization error
#: and the int8-mixed search (the split is shuffled: the first ones are a sample of it)
VALIDATION_CAP = 2000


@dataclass
class Dataset:
    """Train/val/test splits plus the calibration subset, all float32 features.

    ``x_train`` and ``x_val`` are what the Keras model trains on: normalized when the recipe
    asks for it. ``x_test`` and ``x_calib`` are what the exported artifacts take: raw features
    when the fitted ``normalization`` is embedded in front of the model (``embedded``, the
    default), normalized ones otherwise; ``model_inputs`` maps them to the trained model's
    space. Raw training features are not kept (only the calibration subset of them).

    ``y`` is int64 class ids (classification), float32 targets (regression), int64 0/1 flags
    (anomaly; the train and val splits hold normal samples only) or int64 masks
    (segmentation). ``class_names`` names the classes, or the targets for regression.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_calib: np.ndarray
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    #: the fitted feature scaling (None for ``normalize: none``)
    normalization: Normalization | None = None
    #: whether the artifacts carry ``normalization`` (x_test and x_calib are then raw)
    embedded: bool = False
    #: a text source's vocabulary (id i = token i; ``edgekit.data.text``), None for other data
    vocabulary: list[str] | None = None
    #: a model of several outputs: each labelled output's task ({output name: task}, from
    #: ``y_train_<output>`` arrays and the recipe's ``outputs``); {} otherwise
    output_tasks: dict[str, str] = field(default_factory=dict)

    def model_inputs(self, x: np.ndarray) -> np.ndarray:
        """Artifact inputs (x_test, x_calib) -> the trained model's inputs."""
        return self.normalization.apply(x) if self.embedded and self.normalization is not None else x

    def artifact_inputs(self, x: np.ndarray) -> np.ndarray:
        """The trained model's inputs (x_train, x_val) -> what the artifacts take."""
        return self.normalization.invert(x) if self.embedded and self.normalization is not None else x

    @property
    def input_shape(self) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
        """The shape of one sample; per input name for a model of several inputs."""
        return data_checks_shapes(self.x_train)

    @property
    def inputs_summary(self) -> str:
        """The sample shape for the build log: ``[8, 8, 1]``, or ``image [8, 8, 1] float32, ids [6] int64``."""
        shapes = self.input_shape
        if not isinstance(shapes, dict):
            return str(list(shapes))
        return ", ".join(f"{name} {list(shape)} {self.x_train.dtype[name].base.name}" for name, shape in shapes.items())

    @property
    def labels_summary(self) -> str:
        """What the labels are, for the build log and ``edgekit validate``: "10 classes", "2 targets" or "label-free"."""
        from edgekit.tasks import TASKS

        if not TASKS[self.task].needs_labels:
            return "label-free"
        if self.output_tasks:
            heads = self.info.get("outputs") or {}
            return "labels for " + ", ".join(
                f"{name} ({task}{', ' + str(heads[name]['num_classes']) + ' classes' if 'num_classes' in heads.get(name, {}) else ''})"
                for name, task in self.output_tasks.items())
        return f"{self.num_classes} {'targets' if self.task == 'regression' else 'classes'}"

    @property
    def num_classes(self) -> int:
        """Classes, regression targets, or mask classes: the model's output width."""
        return len(self.class_names)


def data_checks_shapes(x: np.ndarray):
    """The sample shape of a batch: one tuple, or {input name: shape} for several inputs."""
    if x.dtype.names:
        return {name: tuple(x.dtype[name].shape) for name in x.dtype.names}
    return tuple(x.shape[1:])


def load_dataset(spec, seed: int, calibration_samples: int, task: str = "classification",
                 output_tasks: dict[str, str] | None = None) -> Dataset:
    """Load the recipe's data section and split it.

    Args:
        spec: the recipe's ``data`` section.
        seed: the recipe seed; the same seed always gives the same splits.
        calibration_samples: how many training samples to draw for int8 calibration.
        task: the recipe's task; decides what the labels must be and how splits are drawn.
        output_tasks: for labels of several outputs (``y_train_<output>``), the task of each
            that is not ``task`` (the recipe's ``outputs``).

    Raises:
        DataError: a missing or unreadable file, labels that do not fit the task, or a
            builtin dataset made for another task.
    """
    info: dict[str, Any] = {"source": spec.source}
    if spec.source in FILE_SOURCES:
        import importlib

        from edgekit.cache import file_sha256

        path = Path(spec.path)
        if spec.source == "images":  # a folder; every other kind reads a file
            from edgekit.data.folders import check_folder, folder_sha256

            check_folder(path)
        elif not path.is_file():
            raise DataError(f"data.path: file not found: {path}; check the path (relative paths start at the recipe's folder)")
        info["path"] = str(path)
        info["sha256"] = folder_sha256(path) if path.is_dir() else file_sha256(path)
        module, _, function = FILE_READERS[spec.source].partition(":")
        # a reader may return a third item: what it read, for results.json's data section
        arrays, names, *read = getattr(importlib.import_module(module), function)(path, spec, task)
        info.update(*read)
    else:
        builtin = BUILTINS[spec.source]
        if builtin.task != task and _needs_labels(task):  # fidelity takes any dataset and ignores its labels
            raise DataError(f"data.source {spec.source} is a {builtin.task} dataset but the recipe's task is {task}; "
                            f"set task: {builtin.task} or choose a {task} dataset")
        arrays, names = builtin.load(spec)

    arrays = dict(arrays)
    if not _needs_labels(task):
        arrays, names = _without_labels(arrays), []
        info["labels"] = "none: label-free (task fidelity scores every artifact against the Keras fp32 outputs)"
    for key, array in arrays.items():
        data_checks.check_samples_axis(array, key)
        if key.startswith("x") or (key.startswith("y") and task == "regression"):
            # before any split: the error names samples by their index in the file's own array
            named = f"{Path(spec.path).name} array {key}" if spec.source in FILE_SOURCES else key
            data_checks.check_finite(array, named, "values" if key.startswith("x") else "targets")
    heads = _output_tasks(arrays, task, output_tasks or {})
    for key in [k for k in arrays if k.startswith("y")]:
        arrays[key] = _head_labels(arrays[key], key, heads) if heads else _labels(arrays[key], key, task)
    # never for fidelity (no labels), nor for labels of several outputs
    stratify = task in ("classification", "anomaly") and not heads
    if "x" in arrays:
        _check_pair(arrays["x"], arrays["y"], "x", "y", task)
        names = names or ([] if heads else _names(arrays["y"], task))
        x_train, x_test, y_train, y_test = _split(arrays.pop("x"), arrays.pop("y"), spec.test_fraction, seed, stratify)
    else:
        # popped: the splits below copy them, and the file's arrays need not outlive that
        x_train, y_train, x_test, y_test = (arrays.pop(k) for k in ("x_train", "y_train", "x_test", "y_test"))
        _check_pair(x_train, y_train, "x_train", "y_train", task)
        _check_pair(x_test, y_test, "x_test", "y_test", task)
        data_checks.check_splits({"train": (x_train, y_train), "test": (x_test, y_test)})
        names = names or ([] if heads else _names(np.concatenate([y_train, y_test]), task))
    if "x_val" in arrays:
        x_val, y_val = arrays["x_val"], arrays["y_val"]
    elif spec.val_fraction > 0:
        x_train, x_val, y_train, y_val = _split(x_train, y_train, spec.val_fraction, seed + 1, stratify)
    else:
        x_val, y_val = x_train[:0], y_train[:0]
    vocabulary = None
    if spec.source == "text":  # raw strings so far: the vocabulary is fitted on the training split only
        from edgekit.data import text

        (x_train, x_val, x_test), vocabulary, info["tokenizer"] = text.encode_splits(spec, x_train, x_val, x_test)
        info["vocab_size"] = len(vocabulary)
    elif spec.source == "imdb":
        from edgekit.data.keras_cache import IMDB_WORDS

        info["vocab_size"] = IMDB_WORDS  # the text models' embedding rows (ids 0..9999)
    if task == "anomaly":
        if x_train.dtype.names or heads:
            raise DataError("the anomaly task scores how well a model reconstructs its one input; this data names "
                            "several inputs or outputs: use task fidelity (every output against the Keras model) or "
                            "label each output (y_train_<output>) for classification or regression")
        x_train, y_train, x_val, y_val, info["anomaly"] = _normal_only(x_train, y_train, x_val, y_val, y_test)

    splits = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
    data_checks.check_splits(splits, regression=task == "regression" and not heads)
    if heads:
        names = []  # per output, in info["outputs"]: several outputs share no class table
        info["outputs"] = _heads_info(heads, y_train, y_test, splits)
    elif task == "classification":
        data_checks.check_classes(y_train, len(names))
    rng = np.random.default_rng(seed)
    n_calib = min(calibration_samples, len(x_train))
    calib_idx = np.sort(rng.choice(len(x_train), size=n_calib, replace=False))
    per = getattr(spec, "normalize_per", "feature")
    normalization = _normalize(spec.normalize, x_train, per)
    embedded = normalization is not None and getattr(spec, "embed_normalization", True)
    x_calib = x_train[calib_idx]
    if normalization is not None:
        # The model trains on normalized splits; the artifacts take raw inputs when the
        # normalization is embedded in them, so test and calibration stay raw then.
        x_train, x_val = normalization.apply(x_train), normalization.apply(x_val)
        x_calib = x_calib if embedded else normalization.apply(x_calib)
        x_test = x_test if embedded else normalization.apply(x_test)
    info["normalize"] = {**normalization.to_dict(), "embedded": embedded} if normalization else {"kind": "none"}
    info["splits"] = {"train": len(x_train), "val": len(x_val), "test": len(x_test)}
    info["calibration"] = {"source": "train", "size": int(n_calib), "requested": int(calibration_samples), "seed": seed}
    shapes = data_checks_shapes(x_train)
    info["input_shape"] = {k: list(v) for k, v in shapes.items()} if isinstance(shapes, dict) else list(shapes)
    if x_train.dtype.names:  # several inputs: each one's own dtype
        info["input_dtypes"] = {name: x_train.dtype[name].base.name for name in x_train.dtype.names}
    if _needs_labels(task) and not heads:  # label-free data has no classes: the model's outputs say how many values
        info["num_classes"] = len(names)
    info["task"] = task
    return Dataset(
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test,
        x_calib=x_calib, class_names=list(names), info=info, task=task,
        normalization=normalization, embedded=embedded, vocabulary=vocabulary, output_tasks=heads,
    )


def _output_tasks(arrays: dict[str, np.ndarray], task: str, given: dict[str, str]) -> dict[str, str]:
    """{output name: task} for labels of several outputs (a structured y, ``y_train_<output>``);
    {} for labels of one model output. Label-free data has none either."""
    ys = [v for k, v in arrays.items() if k.startswith("y") and v.dtype.names]
    if not ys or not _needs_labels(task):
        return {}
    return {name: given.get(name, task) for name in ys[0].dtype.names}


def _head_labels(y: np.ndarray, key: str, heads: dict[str, str]) -> np.ndarray:
    """Each output's labels checked and converted for its own task (``_labels``)."""
    from edgekit.runtimes import join_fields

    for name, head_task in heads.items():
        if head_task == "anomaly" or not _needs_labels(head_task):
            raise DataError(f"outputs.{name}: task {head_task} cannot score one output of several from labels; "
                            "use classification, regression or segmentation, or leave the output's labels out "
                            "(it is then scored against the Keras model's outputs)")
    return join_fields([(name, _labels(y[name], f"{key}_{name}", heads[name])) for name in y.dtype.names])


def _heads_info(heads: dict[str, str], y_train: np.ndarray, y_test: np.ndarray, splits) -> dict:
    """results.json's ``data.outputs``: each labelled output's task and classes (or targets)."""
    out = {}
    for name, head_task in heads.items():
        record = {"task": head_task, "labels": f"y_train_{name}"}
        if head_task in ("classification", "segmentation"):
            both = np.concatenate([y_train[name].ravel(), y_test[name].ravel()])
            record["num_classes"] = int(both.max()) + 1 if len(both) else 0
            if head_task == "classification":
                data_checks.check_classes(y_train[name], record["num_classes"])
        elif head_task == "regression":
            record["targets"] = int(np.prod(y_train.dtype[name].shape, dtype=np.int64)) or 1
            for split, (_, y) in splits.items():
                data_checks.check_finite(y[name], f"y_{split}_{name}", "targets")
        out[name] = record
    return out


def _split(x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool = True):
    from sklearn.model_selection import train_test_split

    if len(y) < 2:
        raise DataError(f"the data has {len(y)} sample(s); splitting into train and test needs at least 2 "
                        "(a few hundred to measure accuracy): add samples")
    by = None
    if stratify:
        counts = np.bincount(y)
        # Stratify when every class can appear on both sides; tiny sets fall back to shuffling.
        if counts[counts > 0].min() >= 2 and round(len(y) * fraction) >= len(counts[counts > 0]):
            by = y
    try:
        return train_test_split(x, y, test_size=fraction, random_state=seed, stratify=by)
    except ValueError as exc:  # e.g. a fraction that leaves one side empty
        raise DataError(f"cannot split {len(y)} samples with fraction {fraction}: {exc}; "
                        "change data.test_fraction / data.val_fraction or add samples") from None


def _normal_only(x_train, y_train, x_val, y_val, y_test):
    """An autoencoder learns "normal": anomalous samples leave the train and val splits."""
    if not y_test.any() or y_test.all():
        raise DataError("the anomaly task needs normal (0) and anomalous (1) samples in the test split; "
                        f"the test split has {int(y_test.sum())} anomalous of {len(y_test)}")
    keep_train, keep_val = y_train == 0, y_val == 0
    record = {"dropped_from_train": int((~keep_train).sum()), "dropped_from_val": int((~keep_val).sum()),
              "test_anomalous": int(y_test.sum()), "test_normal": int((y_test == 0).sum())}
    return x_train[keep_train], y_train[keep_train], x_val[keep_val], y_val[keep_val], record


def _needs_labels(task: str) -> bool:
    from edgekit.tasks import TASKS

    return TASKS[task].needs_labels


def _without_labels(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """x arrays only (any y is dropped), each with a zero-width ``y`` placeholder of its length:
    splits are drawn and stored as for labelled data, and nothing can read a label from it."""
    xs = {k: v for k, v in arrays.items() if k.startswith("x")}
    if not xs:
        raise DataError(f"expected an array x (or x_train and x_test), found: {', '.join(sorted(arrays)) or 'no arrays'}; "
                        "save the sample inputs with numpy.savez(path, x=inputs)")
    if "x" not in xs and not ("x_train" in xs and "x_test" in xs):
        raise DataError(f"found {', '.join(sorted(xs))}: expected x (split by data.test_fraction), or both x_train and x_test")
    return {**xs, **{"y" + k[1:]: np.zeros((len(v) if v.ndim else 0, 0), np.float32) for k, v in xs.items()}}


def _labels(y: np.ndarray, name: str, task: str) -> np.ndarray:
    """Check and convert labels for the task."""
    if not _needs_labels(task):
        return y  # the zero-width placeholder of _without_labels
    if task == "regression":
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"{name}: expected numeric regression targets, received dtype {y.dtype}")
        if y.ndim not in (1, 2):
            raise DataError(f"{name}: expected one target per sample (shape [N]) or several (shape [N, targets]), "
                            f"received shape {list(y.shape)}")
        return y.astype(np.float32)
    if task == "segmentation":
        y = y[..., 0] if y.ndim == 4 and y.shape[-1] == 1 else y
        if y.ndim != 3 or not np.all(np.mod(y, 1) == 0) or (y < 0).any():
            raise DataError(f"{name}: expected integer masks of shape [N, H, W] with class ids >= 0, received shape {list(y.shape)}")
        y = y.astype(np.int64)
        data_checks.check_class_ids(y, name)
        return y
    y = _as_class_ids(y, name)
    if task == "anomaly" and (y > 1).any():
        raise DataError(f"{name}: expected anomaly flags 0 (normal) or 1 (anomalous), received values up to {int(y.max())}")
    return y


def _names(y: np.ndarray, task: str) -> list[str]:
    if not _needs_labels(task):
        return []  # fidelity: the model's outputs, not labels, say how many there are
    if task == "regression":
        return ["y"] if y.ndim == 1 else [f"y{i}" for i in range(y.shape[1])]
    if task == "anomaly":
        return ["normal", "anomaly"]
    return _class_names(y)


def _as_class_ids(y: np.ndarray, name: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise DataError(f"{name}: expected one class label per sample (shape [N]), received shape {list(y.shape)}")
    if not np.all(np.mod(y, 1) == 0) or (y < 0).any():
        raise DataError(f"{name}: expected integer class ids >= 0 for classification, received values like {y[:3].tolist()}")
    y = y.astype(np.int64)
    data_checks.check_class_ids(y, name)  # before a class table is made from the largest id
    return y


def _class_names(y: np.ndarray) -> list[str]:
    # Empty labels give no classes; the split checks then say which array has no samples.
    return [str(i) for i in range(int(y.max()) + 1)] if len(y) else []


def _check_pair(x: np.ndarray, y: np.ndarray, xname: str, yname: str, task: str = "classification") -> None:
    if len(x) != len(y):
        raise DataError(f"{xname} has {len(x)} samples but {yname} has {len(y)}; they must match")
    if x.dtype.names:  # several inputs: each field holds an array per sample
        for name in x.dtype.names:
            if not x.dtype[name].shape:
                raise DataError(f"{xname}_{name}: expected shape [samples, features...], received shape [{len(x)}]")
        return
    if x.ndim < 2:
        raise DataError(f"{xname}: expected shape [samples, features...], received shape {list(x.shape)}")
    if task == "segmentation" and (x.ndim < 3 or x.shape[1:3] != y.shape[1:3]):
        raise DataError(f"{yname}: masks of shape {list(y.shape[1:])} do not cover the images of shape {list(x.shape[1:])}; "
                        "give one class id per pixel")


def _normalize(kind: str, x_train: np.ndarray, per: str = "feature") -> Normalization | None:
    """The scaling of ``kind`` fitted on the training split (None for ``none``)."""
    if kind == "none":
        return None
    if x_train.dtype.names:  # several inputs: each float input its own statistics, integer ones none
        return InputNormalizations(kind, per, {name: _normalize(kind, x_train[name], per) for name in x_train.dtype.names
                                               if np.issubdtype(x_train.dtype[name].base, np.floating)})
    # Statistics from the training split only: per feature (every input position), or per
    # channel (the last axis, shared over time or space; right for padded sequences).
    x_train = np.asarray(x_train, np.float32)
    axes = 0 if per == "feature" else tuple(range(x_train.ndim - 1))
    if kind == "standard":
        shift = x_train.mean(axis=axes)
        scale = x_train.std(axis=axes)
    else:
        shift = x_train.min(axis=axes)
        scale = x_train.max(axis=axes) - shift
    scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
    return Normalization(kind, per, np.asarray(shift, np.float32), scale)
