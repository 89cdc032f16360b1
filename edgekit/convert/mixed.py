"""int8-mixed: full-integer int8 with the fewest layers kept float that bring the task metric on
the validation split within ``quantize.max_drop`` of the fp32 Keras model's.

For each format the search starts from the plain int8 artifact (with the recipe's own
``keep_float`` layers): when its drop on the validation split is within the budget, int8-mixed
is that artifact and no layer more is float. Otherwise:

- A format whose converter module has ``quantize_with_accuracy_control`` (OpenVINO: NNCF's,
  ``edgekit.convert.openvino``) searches itself (the task metric as its validation
  function, the budget as an absolute ``max_drop``); the layers it reverted to float are read
  back from the IR (no FakeQuantize feeds them) and mapped to Keras names. Its result is checked
  on the validation split in edgekit's own session; if NNCF fails or misses the budget there,
  the greedy search below runs instead.
- Elsewhere (and as OpenVINO's fallback): a greedy search over the layers ordered by their
  per-layer quantization error in the plain int8 artifact, worst first
  (``edgekit.evaluate.layer_error.rank_groups``: a layer, or the layers one op fused, at once):
  keep the worst 1, 2, 4, ... of them float until the budget holds, then bisect between the
  last count that missed and the first that held, so a model of n layers costs about 2 log2(n)
  conversions; then each kept entry is dropped again where the budget holds without it (the ranking is a guess: a layer's own error
  is not the metric's), at most ``PRUNE_LIMIT`` conversions more.

The validation split only: the test split stays untouched for the row's reported metrics. The
drop is measured against the fp32 Keras model on the same validation samples. When even every
layer in float misses the budget, the best artifact found is kept and ``settings["mixed"]``
says why (``met: false`` and ``reason``).
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert import keras_layer_names, outer_names
from edgekit.convert.preprocess import LAYER_NAMES
from edgekit.errors import one_line

#: validation samples the per-layer error ranking runs on (the metric uses every one)
RANK_SAMPLES = 256
#: the most layers of the order ``settings["mixed"]["order"]`` shows
ORDER_SHOWN = 50
#: the most layers the kept set is pruned over, one conversion each (see ``_greedy``)
PRUNE_LIMIT = 8
#: the budget holds when the drop is at most max_drop plus this (float rounding of a count ratio)
TOLERANCE = 1e-9


class _Validation:
    """The validation split in the artifacts' input space and how to score outputs on it."""

    def __init__(self, x_model: np.ndarray, y: np.ndarray, x_artifact: np.ndarray, task: str):
        from edgekit.tasks import TASKS

        if len(y) == 0:
            raise ValueError("int8-mixed needs a validation split (data.val_fraction > 0, or x_val/y_val in the data "
                             "file): the budget is checked there, never on the test split")
        self.x_model, self.y, self.x, self.task = x_model, y, x_artifact, task
        self.metric = TASKS[task].primary_metric
        self.higher_is_better = TASKS[task].higher_is_better

    def score(self, outputs: np.ndarray) -> float:
        from edgekit.evaluate import scores

        x = self.x_model if self.task == "anomaly" else None
        try:
            return float(scores.metrics(self.task, outputs, self.y, x=x)[self.metric])
        except ValueError as exc:
            raise ValueError(f"int8-mixed: {self.metric} on the validation split: {one_line(exc, typed=False)}") from exc

    def drop(self, value: float, reference: float) -> float:
        """How much worse ``value`` is than ``reference``, in the metric's units (> 0: worse)."""
        return reference - value if self.higher_is_better else value - reference


def build_mixed(fmt, exported, path: Path, calibration: np.ndarray, options: dict, *, keep_float=(), max_drop: float,
                data, task: str, threads: int = 1, log: Callable[[str], None] = print) -> dict:
    """Write the int8-mixed artifact of ``exported`` for format ``fmt`` at ``path``.

    Args:
        fmt: the format's row (``edgekit.formats.Format``).
        exported: the Keras model the artifacts are made from (behind the embedded
            normalization when the data embeds it).
        path: where the artifact goes (its companions beside it).
        calibration: the int8 calibration samples (as for int8).
        options: the format's recipe options.
        keep_float: the recipe's own ``quantize.keep_float`` layers, float in every trial.
        max_drop: the budget, in the task's primary metric.
        data: the build's dataset (``x_val``/``y_val``: the trained model's inputs;
            ``artifact_inputs`` maps them to what the artifacts take).
        task: the recipe's task.
        threads: the runtime's threads while scoring.
        log: where progress lines go.

    Returns:
        The int8 converter's settings of the artifact kept, plus ``mixed``: method, budget,
        reference and drops, the layers kept float, the trials.
    """
    from edgekit.data import VALIDATION_CAP

    path = Path(path)
    # the samples a worker receives, wherever this runs (the cache key names the cap)
    x_model, y = np.asarray(data.x_val)[:VALIDATION_CAP], np.asarray(data.y_val)[:VALIDATION_CAP]
    artifact_inputs = getattr(data, "artifact_inputs", None)
    x_artifact = artifact_inputs(x_model) if artifact_inputs is not None else x_model
    validation = _Validation(x_model, y, np.asarray(x_artifact, np.float32), task)
    reference = validation.score(_keras_outputs(exported, validation.x))
    convert = fmt.load_converter()
    base_keep = tuple(keep_float)
    record: dict[str, Any] = {"budget": max_drop, "metric": validation.metric, "drop_type": "absolute",
                              "reference": round(reference, 6), "reference_model": "fp32 Keras",
                              "validation_samples": len(validation.y), "trials": []}

    with tempfile.TemporaryDirectory(prefix=f".{path.name}.mixed-", dir=path.parent) as tmp:
        trials = _Trials(fmt, convert, exported, Path(tmp), calibration, options, base_keep, validation, reference,
                         threads, log, path.name)
        plain = trials.run(())
        record["int8_drop"] = round(plain.drop, 6)
        if plain.drop <= max_drop + TOLERANCE:
            record.update(method="plain int8 holds", met=True)
            return _finish(fmt, plain, path, record, base_keep, trials)
        module = importlib.import_module(fmt.converter_module)
        quantized = _quantized_layers(module, plain.path, exported, base_keep)
        found = None
        if hasattr(module, "quantize_with_accuracy_control"):  # the format's own search (NNCF's)
            found = _accuracy_control(module, trials, exported, calibration, options, max_drop, record, quantized)
        if found is None:
            found = _greedy(trials, fmt, exported, plain, quantized, max_drop, record)
        return _finish(fmt, found, path, record, base_keep, trials)


class _Trial:
    def __init__(self, layers, path: Path, settings: dict, value: float, drop: float, method: str = "greedy"):
        self.layers, self.path, self.settings, self.value, self.drop, self.method = (
            tuple(layers), path, settings, value, drop, method)


class _Trials:
    """Converts and scores one candidate set of float layers; remembers every trial."""

    def __init__(self, fmt, convert, exported, folder: Path, calibration, options, base_keep, validation, reference,
                 threads, log, name):
        self.fmt, self.convert, self.exported, self.folder = fmt, convert, exported, folder
        self.calibration, self.options, self.base_keep = calibration, options, base_keep
        self.validation, self.reference, self.threads, self.log, self.name = validation, reference, threads, log, name
        self.done: dict[tuple, _Trial] = {}

    def path(self) -> Path:
        return self.folder / f"trial{len(self.done)}{self.fmt.suffix}"

    def run(self, layers) -> _Trial:
        layers = tuple(layers)
        if layers in self.done:
            return self.done[layers]
        target = self.path()
        keep = (*self.base_keep, *layers)
        kwargs = {"keep_float": keep} if keep else {}
        settings = self.convert(self.exported, target, "int8", self.calibration, self.options, **kwargs)
        return self.score(layers, target, settings)

    def score(self, layers, target: Path, settings: dict, method: str = "greedy") -> _Trial:
        value = self.validation.score(self.session(target).predict(self.validation.x))
        trial = _Trial(layers, target, settings, value, self.validation.drop(value, self.reference), method)
        self.done[tuple(layers)] = trial
        self.log(f"[convert] {self.name}: int8-mixed trial, {len(layers)} layer(s) float: "
                 f"{self.validation.metric} drop {trial.drop:+.4f} on validation")
        return trial

    def session(self, target: Path):
        return self.fmt.load_runtime()(target, self.threads, self.options)

    def records(self) -> list[dict]:
        return [{"float": list(t.layers), "drop": round(t.drop, 6), "method": t.method} for t in self.done.values()]


def _greedy(trials: _Trials, fmt, exported, plain: _Trial, quantized: list[str], max_drop: float, record: dict) -> _Trial:
    """Keep the worst 1, 2, 4, ... entries of the ranking float (a fused group's layers at once)
    until the budget holds, then bisect."""
    order, how = _ranking(fmt, exported, plain.path, trials.validation, quantized, trials.options)
    record["order"] = ["+".join(group) for group in order[:ORDER_SHOWN]]
    record["order_from"] = how
    if len(order) > ORDER_SHOWN:
        record["order_total"] = len(order)
    record.setdefault("method", "greedy by per-layer error")
    if record["method"] != "greedy by per-layer error":
        record["method"] += ", then greedy by per-layer error"

    def holds(trial: _Trial) -> bool:
        return trial.drop <= max_drop + TOLERANCE

    def layers(groups) -> list[str]:
        return [name for group in groups for name in group]

    missed, held = 0, None
    count = 1
    while count <= len(order):
        trial = trials.run(layers(order[:count]))
        if holds(trial):
            held = count
            break
        missed = count
        if count == len(order):
            break
        count = min(count * 2, len(order))
    if held is None:
        best = min(trials.done.values(), key=lambda t: (t.drop, len(t.layers)))
        record.update(met=False, reason=_why_not(trials, layers(order), best, max_drop))
        return best
    while held - missed > 1:  # the fewest float entries that hold: bisect (missed, held]
        middle = (missed + held) // 2
        if holds(trials.run(layers(order[:middle]))):
            held = middle
        else:
            missed = middle
    record["met"] = True
    # The ranking is a guess (a layer's own error is not the metric's): try the kept set without
    # each of its entries, the best ranked last, and drop those the budget does not need.
    kept = list(order[:held])
    if 1 < len(kept) <= PRUNE_LIMIT:
        for group in reversed(order[:held]):
            fewer = [g for g in kept if g != group]
            if holds(trials.run(layers(fewer))):
                kept = fewer
        if len(kept) < held:
            record["method"] += ", pruned"
    return trials.run(layers(kept))


def _why_not(trials: _Trials, order: list[str], best: _Trial, max_drop: float) -> str:
    """One line: why no trial met the budget."""
    metric = trials.validation.metric
    if not order:
        return (f"the budget ({max_drop:g} {metric}) was not met by plain int8 (drop {best.drop:.4f} on validation) "
                "and no layer of the Keras model maps to an int8 op of the artifact to keep float")
    text = (f"the budget ({max_drop:g} {metric}) was not met even with every quantized layer ({len(order)}) in "
            f"float: the best drop on validation was {best.drop:.4f} with {len(best.layers)} float; what is left is "
            "quantization outside the layers (the artifact's int8 input or output)")
    samples = len(trials.validation.y)
    if metric == "accuracy" and max_drop < 1 / samples:
        text += f", and the budget is below one validation sample (1/{samples} = {1 / samples:.4f})"
    return text


def _ranking(fmt, exported, artifact: Path, validation: _Validation, quantized: list[str],
             options: dict | None = None) -> tuple[list[tuple[str, ...]], str]:
    """The quantized layers in groups (a layer, or the layers fused into one op), the worst
    per-layer error first; the layers it does not rank follow one by one in model order."""
    samples = validation.x[:RANK_SAMPLES]
    try:
        from edgekit.evaluate.layer_error import layer_errors, rank_groups

        ranked = [tuple(name for name in group if name in quantized)
                  for group in rank_groups(layer_errors(fmt, exported, artifact, samples, options=options))]
        ranked = [group for group in ranked if group]
        how = f"per-layer quantization error (SNR) of the plain int8 artifact on {len(samples)} validation samples, worst first"
    except Exception as exc:  # noqa: BLE001 - the search still works without the ranking, only slower
        ranked = []
        how = f"model order (the per-layer error was unavailable: {one_line(exc)})"
    seen = {name for group in ranked for name in group}
    rest = [(layer,) for layer in quantized if layer not in seen]
    if ranked and rest:
        how += f"; {len(rest)} layer(s) it did not rank follow in model order"
    return ranked + rest, how


def _quantized_layers(module, artifact: Path, exported, base_keep) -> list[str]:
    """The Keras layers with int8 ops in ``artifact``, in model order (candidates to keep float);
    every layer where the format's converter cannot say (no ``layer_float``)."""
    names = [name for name in keras_layer_names(exported)
             if name not in LAYER_NAMES and name not in base_keep and name not in outer_names(exported)]
    if not hasattr(module, "layer_float"):
        return names
    precision = module.layer_float(artifact, names, outer_names(exported))
    return [name for name in names if precision.get(name) is False]


def _accuracy_control(module, trials: _Trials, exported, calibration, options, max_drop: float, record: dict,
                      quantized: list[str]) -> _Trial | None:
    """The format's own accuracy-aware quantization (OpenVINO: NNCF's); None, and the reason in
    ``record``, where it fails or misses the budget in edgekit's session."""
    record["method"] = "nncf accuracy control"
    target = trials.path()
    validation = trials.validation
    try:
        settings = module.quantize_with_accuracy_control(
            exported, target, calibration, options, validation.x,
            lambda outputs, indices: _score_subset(validation, outputs, indices), max_drop, keep_float=trials.base_keep)
        floating = module.layer_float(target, quantized, outer_names(exported))
        layers = tuple(layer for layer in quantized if floating.get(layer))
        trial = trials.score(layers, target, settings, method="nncf accuracy control")
    except Exception as exc:  # noqa: BLE001 - the greedy search is the fallback
        record["accuracy_control"] = f"failed: {one_line(exc)}"
        return None
    if trial.drop <= max_drop + TOLERANCE:
        record["met"] = True
        return trial
    record["accuracy_control"] = (f"missed the budget in edgekit's own session (drop {trial.drop:.4f} with "
                                  f"{len(layers)} layer(s) float)")
    return None


def _score_subset(validation: _Validation, outputs: np.ndarray, indices: np.ndarray) -> float:
    """The metric on the validation samples ``indices`` (NNCF scores subsets while ranking)."""
    sub = _Validation(validation.x_model[indices], validation.y[indices], validation.x[indices], validation.task)
    return sub.score(outputs)


def _keras_outputs(model, x: np.ndarray, batch: int | None = None) -> np.ndarray:
    """The fp32 Keras model's outputs on ``x``, batch by batch (by default batches whose layer
    outputs fit ``edgekit.convert.BATCH_BYTES``: 256 samples for small models)."""
    import tensorflow as tf

    from edgekit.convert import batch_size

    batch = batch or batch_size(model)

    return np.concatenate([np.asarray(model(tf.constant(x[i:i + batch]), training=False))
                           for i in range(0, len(x), batch)]) if len(x) else np.zeros((0,))


def _finish(fmt, trial: _Trial, path: Path, record: dict, base_keep, trials: _Trials) -> dict:
    """Move the chosen trial's files to ``path``; its settings plus the search's record."""
    for source, target in zip(fmt.files(trial.path), fmt.files(path)):
        shutil.copyfile(source, target.with_name(target.name + ".tmp"))
        Path(target.with_name(target.name + ".tmp")).replace(target)
    layers = [*base_keep, *trial.layers]
    record["trials"] = trials.records()
    record.update(kept_float=list(trial.layers), float_layers=len(trial.layers), drop=round(trial.drop, 6),
                  value=round(trial.value, 6), conversions=len(record["trials"]))
    settings = dict(trial.settings)
    settings.update(kept_float=layers, float_layers=len(layers) - len(settings.get("not_float", [])), mixed=record)
    return settings

