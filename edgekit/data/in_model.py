"""The data side of in-model preprocessing: feed each input the raw range its model's own
first layers expect (``edgekit.models.input_preprocessing`` reads them).

An image source is read as brightness in [0, 1] (pixel / 255); a model that starts with
``Rescaling(1/255)`` or ``Rescaling(1/127.5, offset=-1)`` (or a Normalization adapted on pixels)
expects the pixels themselves, 0..255: then every split and the calibration subset are fed as
pixels, so the Keras row, every artifact and int8 calibration see what the model was made
for. Other sources (csv, npz, tabular and time-series builtins) are the user's raw values and
stay as they are; where the model's layers map them far from unit scale, the build log and the
input contract warn. A model that normalizes its inputs itself refuses ``data.normalize``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from edgekit.errors import DataError
from edgekit.models.input_preprocessing import PIXEL_RANGES, InputPreprocessing, range_score

#: sources whose samples edgekit reads as image brightness in [0, 1] (pixel / 255)
PIXEL_SOURCES = ("images", "digits", "mnist5000", "gratings32", "gratings96", "shapes32", "mnist", "fashion_mnist",
                 "cifar10")
#: a pixel range other than edgekit's [0, 1] is fed only when it fits the layers clearly better
#: (range_score lower by this: Rescaling(1/255) scores 1.2 on 0..255 and 6.2 on [0, 1])
CLEARLY_BETTER = 1.0
#: the spread of the data after the layers, as |log(std)|, past which it is far from unit scale
#: (a factor of about 20: [0, 1] images behind Rescaling(1/255) reach 6.7)
FAR_FROM_UNIT = 3.0
#: data.info's key for what was found and fed
INFO_KEY = "input_preprocessing"
#: the file beside a trained model that records what its builder put in front (the train cache keeps it)
RECORD_FILE = "input_preprocessing.json"


def feed_model_range(data, found: list[InputPreprocessing], source: str, log: Callable[[str], None] = print) -> bool:
    """Feed ``data`` (a ``Dataset``, changed in place) in the range ``found`` expects, once
    (``data.info[INFO_KEY]`` marks it). Returns whether any sample changed.

    Raises:
        DataError: the recipe normalizes (``data.normalize``) inputs the model normalizes itself.
    """
    if INFO_KEY in data.info:
        return False
    fields = data.x_train.dtype.names
    changed, records = False, []
    for pre in found:
        if fields and pre.input not in fields:
            continue
        if not fields and found.index(pre) > 0:
            break
        train = data.x_train[pre.input] if fields else data.x_train
        if not np.issubdtype(train.dtype.base if fields else train.dtype, np.floating):
            continue  # ids and categories: no range to feed
        if data.normalization is not None:
            raise DataError(f"data.normalize: {data.normalization.kind} would normalize input {pre.input}, which the "
                            f"model normalizes itself ({pre.describe()}); remove data.normalize: the model takes the "
                            "raw values its own layers expect")
        record = {**pre.to_dict(), "inside_artifact": True}
        factor = 1.0
        if source in PIXEL_SOURCES:
            chosen, score = pre.expected_range()
            default = PIXEL_RANGES["0..1"]
            if chosen != "0..1" and score < range_score(pre, *default) - CLEARLY_BETTER:
                factor = PIXEL_RANGES[chosen][1] / default[1]
            record["expects"] = chosen if factor != 1.0 else "0..1"
            record["fed"] = ("pixels 0..255 (edgekit's brightness in [0, 1] times 255)" if factor != 1.0 else
                             "brightness in [0, 1] (pixel / 255), as edgekit reads images")
        if factor != 1.0:
            _scale_splits(data, pre.input if fields else None, factor)
            changed = True
            record["scaled_by"] = factor
        train = data.x_train[pre.input] if fields else data.x_train
        low, high = float(np.min(train)) if train.size else 0.0, float(np.max(train)) if train.size else 0.0
        record["data_range"] = [low, high]
        after = _after_layers(pre, train)
        record["after_layers"] = [float(after.min()), float(after.max())] if after.size else [0.0, 0.0]
        if warning := _far_from_unit(pre, train, source):
            record["warning"] = warning
            log(f"[data] warning: {warning}")
        records.append(record)
        log(f"[data] input {pre.input} starts with {pre.describe()}: fed {record.get('fed') or 'as the data holds it'}"
            f" (values {low:.4g}..{high:.4g}, {record['after_layers'][0]:.4g}..{record['after_layers'][1]:.4g} "
            "after those layers)")
    data.info[INFO_KEY] = {"inputs": records}
    return changed


def _scale_splits(data, name: str | None, factor: float) -> None:
    """Multiply one input (a field of structured batches, or the plain arrays) in every split
    and the calibration subset by ``factor``, each array once (a split may be a view of another)."""
    done: list[np.ndarray] = []
    for attr in ("x_train", "x_val", "x_test", "x_calib"):
        array = getattr(data, attr)
        if not len(array) or any(np.shares_memory(array, other) for other in done):
            continue
        if name is None:
            setattr(data, attr, (array * np.float32(factor)).astype(np.float32))
        else:
            array[name] = array[name] * np.float32(factor)
        done.append(getattr(data, attr))


def _far_from_unit(pre: InputPreprocessing, train: np.ndarray, source: str) -> str | None:
    """A warning when the data, after the model's own layers, is far from unit scale: the data is
    not in the range the model was made for (e.g. [0, 1] images in an npz, for a model that
    divides by 255)."""
    if not train.size:
        return None
    after = _after_layers(pre, train)
    spread = np.maximum(after.std(axis=0), 1e-30)
    far = float(np.mean(np.abs(np.log(spread))))
    centre = float(np.mean(np.abs(after.mean(axis=0))))
    if far <= FAR_FROM_UNIT and centre <= 10 * max(1.0, float(np.mean(spread))):
        return None
    low, high = float(np.min(train)), float(np.max(train))
    lo, hi = float(after.min()), float(after.max())
    hint = (" (an npz of images in [0, 1] for a model that divides by 255: save the pixels 0..255, or use source: "
            "images)" if source not in PIXEL_SOURCES and high <= 1.0 and pre.expected_range()[0] == "0..255" else "")
    return (f"input {pre.input}: the data's values {low:.4g}..{high:.4g} become {lo:.4g}..{hi:.4g} after the model's "
            f"own first layers ({pre.describe()}), far from the unit range those layers are made to produce; expected "
            f"the raw values the model was trained on: check the data's scale{hint}")


def _after_layers(pre: InputPreprocessing, train: np.ndarray) -> np.ndarray:
    """The samples after the layers' map, one column per channel (the last axis) where the
    map is per channel, one column otherwise: [values, columns]."""
    x = np.asarray(train, np.float64)
    columns = np.asarray(pre.scale).size
    if columns > 1 and x.ndim > 1 and x.shape[-1] == columns:
        return pre.apply(x.reshape(-1, columns))
    return pre.apply(x.reshape(-1, 1)) if columns == 1 else pre.apply(x).reshape(len(x), -1)


def found_in(model) -> list[InputPreprocessing]:
    """``edgekit.models.input_preprocessing.detect`` of a Keras model."""
    from edgekit.models.input_preprocessing import detect

    return detect(model)


def feed_for_build(data, handle, source: str, log: Callable[[str], None] = print) -> bool:
    """``feed_model_range`` for the build's fp32 model (a ``ModelHandle``), unless training fed
    the data already: a model in memory (a model file, just loaded) is read itself; a trained
    model from the cache by the record its training left beside it (``RECORD_FILE``), so that a
    cached rebuild loads no model. Returns whether any sample changed."""
    import json

    if INFO_KEY in data.info:
        return False
    record = handle.path.parent / RECORD_FILE
    if not handle.loaded and record.is_file():
        found = [InputPreprocessing.from_dict(r) for r in json.loads(record.read_text()).get("inputs") or []]
    else:
        found = found_in(handle.get())
    return feed_model_range(data, found, source, log)


def records_of(data) -> list[dict[str, Any]]:
    """What ``feed_model_range`` recorded per input ([] when the model has no such layers)."""
    return list((data.info.get(INFO_KEY) or {}).get("inputs") or [])


def artifact_ranges(data) -> dict[str, list[float]]:
    """The smallest and largest value of each input as the artifacts take it (the test split and
    the calibration subset; x_train may be normalized for the Keras model): ``{input: [min,
    max]}``, ``{"x": [...]}`` for a model of one input. results.json ``data.input_range``."""
    fields = data.x_test.dtype.names
    out = {}
    for name in fields or ("x",):
        parts = [a[name] if fields else a for a in (data.x_test, data.x_calib) if len(a)]
        values = [p for p in parts if p.size and np.issubdtype(p.dtype.base if fields else p.dtype, np.number)]
        if values:
            out[name] = [float(min(np.min(v) for v in values)), float(max(np.max(v) for v in values))]
    return out
