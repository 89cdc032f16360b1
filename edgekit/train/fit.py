"""Fitting the fp32 Keras model, built from the zoo or a builder: its inputs, loss, metrics and
targets from the task table, the epoch log, and the checks that a model fits the data. The
cached stage around it is edgekit.train.stage; model files are edgekit.models.files."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.data import Dataset
from edgekit.errors import DataError
from edgekit.tasks import TASKS


def train(recipe, data: Dataset, log=print, callbacks=()):
    """Build the recipe's zoo model and fit it on the training split.

    Uses the recipe seed for weights and shuffling, and early stopping on the validation split
    (restoring the best weights) when the recipe asks for it. The loss and the fit target come
    from the task table: autoencoders (anomaly) learn to reproduce their input, and regression
    models get a last Rescaling layer so they learn standardized targets but output the
    units of y (which every exported format then carries). A classifier that outputs logits
    (a linear last layer, ``model_output``) trains with ``from_logits=True``, said in the log.

    ``callbacks`` (TensorBoard's, ``edgekit.train.tensorboard``) join the fit's own; a zoo model
    that trains itself (``self_trainer``) ignores them.

    Returns:
        (model, history) where history maps metric name to per-epoch values.
    """
    import tf_keras as keras

    from edgekit import models

    keras.utils.set_random_seed(recipe.seed)
    base_dir = recipe.path.parent if recipe.path else None
    model = models.build(recipe.model, data.input_shape, data.num_classes, base_dir, task=recipe.task,
                         vocab_size=data.info.get("vocab_size"))
    trainer = self_trainer(recipe)
    if trainer is not None:  # a zoo model with its own training (a generator and its discriminator)
        return model, trainer.fit(model, data, recipe, log)
    from edgekit.data.in_model import feed_model_range, found_in

    # A builder whose model starts with Rescaling(1/255) trains on pixels 0..255, not [0, 1]
    feed_model_range(data, found_in(model), recipe.data.source, log)
    check_fits(model, data, recipe.model.input_shape)  # a builder may ignore the shapes it is given: refuse before fitting
    if recipe.task == "regression":
        model = with_target_scale(model, data.y_train)
    output = model_output(model, recipe.task, data.x_train)
    if output is not None and output.from_logits:
        log(f"[train] the model outputs logits ({output.why}): training with from_logits=True")
    spec = recipe.train
    optimizer = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[spec.optimizer](learning_rate=spec.learning_rate)
    model.compile(optimizer=optimizer, loss=task_loss(recipe, output), metrics=task_metrics(recipe))
    x, y, validation = fit_data(recipe, data)
    callbacks = [EpochLog(log, spec.epochs), *callbacks]
    if spec.early_stopping_patience and validation is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=spec.early_stopping_patience, restore_best_weights=True
            )
        )
    history = model.fit(
        x, y,
        validation_data=validation,
        epochs=spec.epochs, batch_size=spec.batch_size, shuffle=True, verbose=0,
        callbacks=callbacks,
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def self_trainer(recipe):
    """The zoo module of a model that trains itself, or None.

    The one seam for zoo models that the task table's loss cannot train (a GAN's generator
    learns against a discriminator): a zoo builder's module that defines
    ``fit(model, data, recipe, log) -> history`` trains the models it builds, and one that
    defines ``model_inputs(data, params, seed) -> data`` says what they take (a generator:
    latent vectors; the data's images become its training target). See ``edgekit.models.dcgan``.
    """
    import importlib

    from edgekit.models import ZOO

    if recipe.model.arch is None:
        return None
    module = importlib.import_module(ZOO[recipe.model.arch].__module__)
    return module if callable(getattr(module, "fit", None)) else None


def model_inputs(recipe, data: Dataset) -> Dataset:
    """``data`` as the recipe's model takes it: unchanged, unless the model's zoo module says
    otherwise (``self_trainer``; a generator takes seeded latent vectors). In place, once
    (``data.info["inputs"]`` marks it), so that calling it again is harmless."""
    module = self_trainer(recipe)
    if module is None or not hasattr(module, "model_inputs") or "inputs" in data.info:
        return data
    return module.model_inputs(data, dict(recipe.model.params), recipe.seed)


def task_loss(recipe, output=None):
    """The training loss of the recipe's task (also used to fine-tune compressed models).

    ``output`` is what the model outputs (``model_output``): a classifier (or a per-pixel
    one) that outputs logits gets the task's cross-entropy with ``from_logits=True``.
    """
    loss = TASKS[recipe.task].loss
    if output is not None and output.from_logits and loss == "sparse_categorical_crossentropy":
        import tf_keras as keras

        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return loss


def model_output(model, task: str, x=None):
    """Logits or probabilities (``edgekit.models.outputs.Output``) for the tasks whose output
    is a distribution over classes; None for the others (regression, anomaly)."""
    from edgekit.models.outputs import CLASS_TASKS, output_kind

    return output_kind(model, x) if task in CLASS_TASKS else None


def task_metrics(recipe) -> list[str]:
    """Keras metrics logged per epoch: accuracy where the labels are classes."""
    return ["accuracy"] if TASKS[recipe.task].labels in ("class ids", "masks") else []


def fit_data(recipe, data: Dataset):
    """(x, y, validation data or None) to fit on: autoencoders fit their inputs, others the labels."""
    if TASKS[recipe.task].fit_target == "inputs":
        return data.x_train, data.x_train, (data.x_val, data.x_val) if len(data.x_val) else None
    return data.x_train, data.y_train, (data.x_val, data.y_val) if len(data.x_val) else None


def with_target_scale(model, y_train: np.ndarray):
    """The model with a last Rescaling layer: outputs * std(y_train) + mean(y_train).

    The network then learns targets of unit scale (an MSE loss on raw values in the hundreds
    trains badly), and every artifact still outputs the units of y, so the metrics of all
    rows compare directly.
    """
    import tf_keras as keras

    y = y_train.reshape(len(y_train), -1).astype(np.float64)
    mean, std = y.mean(axis=0), y.std(axis=0)
    std = np.where(std == 0, 1.0, std)
    # Plain floats for one target keep the layer config readable; lists for several.
    scale = float(std[0]) if len(std) == 1 else std.tolist()
    offset = float(mean[0]) if len(mean) == 1 else mean.tolist()
    outputs = keras.layers.Rescaling(scale, offset, name="target_scale")(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


class EpochLog:
    """A tiny Keras callback that reports one line per epoch through ``log`` and counts the
    epochs on a bar of their own: ``training base``, or ``fine-tuning <model>`` for ``model``
    (whose epoch lines then name it: several models may train while variants convert)."""

    def __new__(cls, log, epochs, model: str | None = None):
        import tf_keras as keras

        from edgekit.progress import end, step

        what = f"fine-tuning {model}" if model else "training base"
        named = f" ({model})" if model else ""

        class EpochLog(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items())
                log(f"  epoch {epoch + 1}/{epochs}{named}: {shown}")
                step(log, what, epoch + 1, epochs)

            def on_train_end(self, logs=None):
                end(log, what)  # stopped early: its bar must not stay behind at 8/10

        return EpochLog()


def check_fits(model, data: Dataset, input_shape=None) -> None:
    """Fail early, with the fix, when the data does not fit the model's inputs or outputs.

    Runs before any training (a zoo or ``model.python`` model is checked as soon as it is
    built, a model file as soon as it is loaded); every split has x_train's sample shape by
    then (``edgekit.data.checks.check_splits``), so x_train stands for all of them. A model of
    several inputs takes one array per input name (``x_train_<input>``), and labels of several
    outputs name theirs (``y_train_<output>``); ``input_shape`` (the recipe's
    ``model.input_shape``) is the shape chosen for free dimensions, which the data must have.
    """
    from edgekit.convert import model_inputs, model_outputs

    inputs, outputs = model_inputs(model), model_outputs(model)
    if len(inputs) > 1 or len(outputs) > 1 or data.x_train.dtype.names or getattr(data, "output_tasks", None):
        return _check_fits_named(inputs, outputs, data, input_shape)
    expected = tuple(model.inputs[0].shape)[1:]
    got = data.input_shape
    _check_chosen_shape(expected, got, input_shape, "x_train, x_test")
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise DataError(
            f"x_train, x_test: data shape {list(got)} does not fit the model input {list(expected)}; "
            f"expected samples of shape {list(expected)}: reshape the data or use a model built for {list(got)}"
        )
    _check_output(tuple(model.outputs[0].shape)[1:], got, data)


def _check_output(out_shape: tuple, got: tuple, data: Dataset) -> None:
    """The one output of a model fits the labels of one output (``y_train``)."""
    if not TASKS[data.task].needs_labels:
        return  # fidelity: any output; every artifact's is compared with the Keras model's
    if data.task == "anomaly":
        if len(out_shape) != len(got) or any(o is not None and o != g for o, g in zip(out_shape, got)):
            raise DataError(f"x_train: an anomaly model must reconstruct its input {list(got)}, but it outputs "
                            f"{list(out_shape)}; use an autoencoder")
        return
    outputs = out_shape[-1] if out_shape else 1
    if data.task == "regression" and outputs is not None and outputs != data.num_classes:
        raise DataError(f"y_train: {data.num_classes} regression target(s) but the model outputs {outputs} values; "
                        "expected one linear output per target")
    if outputs is not None and outputs < data.num_classes:
        raise DataError(
            f"y_train: {data.num_classes} classes (ids 0..{data.num_classes - 1}) but the model outputs {outputs} "
            "values; expected one output per class: use a model with that many outputs"
        )
    if data.task == "classification" and outputs is not None and len(data.y_val) and int(data.y_val.max()) >= outputs:
        raise DataError(f"y_val: class ids go up to {int(data.y_val.max())} but the model outputs {outputs} values "
                        f"(classes 0..{outputs - 1}); expected validation labels among the training classes")


def _check_chosen_shape(expected, got, chosen, where: str, name: str = "") -> None:
    """``model.input_shape`` fits the model, and the data has it."""
    if chosen is None:
        return
    label = f"model.input_shape{'.' + name if name else ''}"
    chosen = tuple(chosen)
    if len(chosen) != len(expected) or any(e is not None and e != c for e, c in zip(expected, chosen)):
        raise DataError(f"{label}: {list(chosen)} does not fit the model input {list(expected)} (None: free); "
                        "give a shape that keeps the model's fixed dimensions")
    _check_data_has_shape(got, chosen, where, label)


def _check_data_has_shape(got, chosen, where: str, label: str) -> None:
    if tuple(got) != tuple(chosen):
        raise DataError(f"{where}: data shape {list(got)} is not {label} {list(chosen)}; the artifacts are "
                        f"converted at the data's shape: reshape the data or drop {label}")


def check_chosen_shape_data(input_shape, data: Dataset) -> None:
    """The data has the recipe's ``model.input_shape`` (per input name, or the one input's), as
    ``check_fits`` asks once the model is loaded; without the model (``edgekit validate``)."""
    if input_shape is None:
        return
    fields = data.x_train.dtype.names
    if isinstance(input_shape, dict):
        for name, chosen in input_shape.items():
            if fields and name in fields:
                _check_data_has_shape(data.x_train.dtype[name].shape, chosen, f"x_train_{name}",
                                      f"model.input_shape.{name}")
    elif not fields:
        _check_data_has_shape(data.input_shape, input_shape, "x_train, x_test", "model.input_shape")


def _check_fits_named(inputs, outputs, data: Dataset, input_shape=None) -> None:
    """check_fits for a model of several inputs or outputs (or labels named after outputs)."""
    from edgekit.tasks import TASKS

    fields = data.x_train.dtype.names
    names = [i.name for i in inputs]
    if len(inputs) > 1 and not fields:
        raise DataError(f"x_train: one array, but the model takes {len(inputs)} inputs ({', '.join(names)}); save one "
                        f"array per input named after it: {', '.join(f'x_train_{n}' for n in names)} (and x_test_...), "
                        f"or {', '.join(f'x_{n}' for n in names)}")
    if fields:
        missing = [n for n in names if n not in fields]
        if missing or len(fields) != len(names):
            raise DataError(f"x_train: the data names inputs {', '.join(fields)}, the model's are {', '.join(names)}; "
                            f"expected one array per model input: {', '.join(f'x_train_{n}' for n in names)} "
                            f"(or x_<input>){'; missing: ' + ', '.join(missing) if missing else ''}")
    chosen = input_shape if isinstance(input_shape, dict) else ({names[0]: input_shape} if input_shape is not None else {})
    for info in inputs:
        expected = tuple(info.shape[1:])
        got = tuple(data.x_train.dtype[info.name].shape) if fields else tuple(data.x_train.shape[1:])
        where = f"x_train_{info.name}" if fields else "x_train, x_test"
        _check_chosen_shape(expected, got, chosen.get(info.name), where, info.name if fields else "")
        if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
            raise DataError(f"{where}: data shape {list(got)} does not fit the model input {info.name} {list(expected)}; "
                            f"expected samples of shape {list(expected)}")
    heads = dict(getattr(data, "output_tasks", None) or {})
    out_names = [o.name for o in outputs]
    if not TASKS[data.task].needs_labels:
        return  # fidelity: every output of every artifact is compared with the Keras model's
    if not heads and len(outputs) == 1:  # several inputs, one output: labels of one output (y_train)
        return _check_output(tuple(outputs[0].shape[1:]), (), data)
    if not heads:
        raise DataError(f"y_train: one label array, but the model has {len(outputs)} outputs ({', '.join(out_names)}); "
                        f"label each output by name: {', '.join(f'y_train_{n}' for n in out_names)} (and y_test_...), "
                        "leave an output's labels out to score it against the Keras model, or set task: fidelity")
    unknown = [h for h in heads if h not in out_names]
    if unknown:
        raise DataError(f"y_train_{unknown[0]}: the model has no output {unknown[0]!r}; its outputs are "
                        f"{', '.join(out_names)}: name the label arrays y_train_<output>")
    if data.task not in heads.values():
        shown = ", ".join(f"{n} {t}" for n, t in heads.items())
        raise DataError(f"task {data.task}: no labelled output is scored for it (labels: {shown}); set task to one of "
                        "theirs, or outputs.<name> to the task of each labelled output")
    described = {o.name: o for o in outputs}
    for name, task in heads.items():
        width = described[name].shape[-1] if len(described[name].shape) > 1 else 1
        record = (data.info.get("outputs") or {}).get(name) or {}
        if task == "classification" and width is not None and width < record.get("num_classes", 0):
            raise DataError(f"y_train_{name}: {record['num_classes']} classes but output {name} has {width} values; "
                            "expected one value per class (or set outputs." f"{name}: regression)")
        if task == "regression" and width is not None and width != record.get("targets", width):
            raise DataError(f"y_train_{name}: {record['targets']} target(s) but output {name} has {width} values; "
                            "expected one value per target")


def predict(model, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Outputs of a Keras model on many samples (used for the baseline metric), in batches of
    ``batch_size``: by default as many samples as the model's layer outputs allow within
    ``edgekit.convert.BATCH_BYTES`` (256 for small models), so memory follows the model, not
    the number of samples."""
    from edgekit.convert import call_structure, model_inputs, model_outputs, named_outputs
    from edgekit.runtimes import cast_input, field_names, join_fields, split_fields

    if batch_size is None:
        from edgekit.convert import batch_size as fitting_batch

        batch_size = fitting_batch(model)
    inputs, outputs = model_inputs(model), model_outputs(model)

    def call(chunk):
        if field_names(chunk) is None and len(inputs) == 1:
            return model(chunk, training=False)
        arrays = [cast_input(a, info.dtype) for a, info in zip(split_fields(chunk, inputs), inputs)]
        return model(call_structure(model, inputs, arrays), training=False)

    outs = []
    for i in range(0, len(x), batch_size):
        result = named_outputs(model, outputs, call(x[i : i + batch_size]))
        if isinstance(result, dict):  # several outputs: one field each (edgekit.runtimes.join_fields)
            outs.append(join_fields([(k, np.asarray(v, np.float32)) for k, v in result.items()]))
        else:
            outs.append(np.asarray(result).astype(np.float32))
    return np.concatenate(outs)


def describe(model, task: str | None = None, x=None) -> dict[str, Any]:
    """The ``model`` block of results.json; with the task, a classifier's ``output``:
    logits or probabilities (``model_output``, on samples ``x`` where the graph does not tell).
    ``inputs`` and ``outputs`` list every input and output (``TensorInfo.to_dict``: name, dtype,
    shape, None for a free dimension); ``input_shape_fixed`` says at which shape the data fixed
    the free dimensions, where the model has some. A SavedModel's serving signature adds
    ``serving_signature`` (its name), a traced subclassed model ``traced`` (its class)."""
    from edgekit.convert import model_inputs, model_outputs, sample_shapes
    from edgekit.models import files as model_file

    inputs, outputs = model_inputs(model), model_outputs(model)
    info = {"name": model.name, "parameters": int(model.count_params()), "input_shape": list(model.inputs[0].shape[1:]),
            "inputs": [i.to_dict() for i in inputs], "outputs": [o.to_dict() for o in outputs]}
    signature = next((layer for layer in getattr(model, "layers", []) if type(layer).__name__ == "ServingSignature"), None)
    if signature is not None:
        info["serving_signature"] = signature.call_endpoint
    elif inner := model_file.subclassed_layer(model):
        info["traced"] = inner
    if x is not None and any(i.free for i in inputs):
        fixed = model_inputs(model, sample_shapes(x))
        info["input_shape_fixed"] = {i.name: list(i.shape[1:]) for i in fixed}
    if len(outputs) > 1 or len(inputs) > 1:
        return info  # several outputs: each is scored on its own (results rows' outputs)
    output = model_output(model, task, x) if task else None
    return {**info, "output": output.kind} if output is not None else info


