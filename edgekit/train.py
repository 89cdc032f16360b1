"""Get the fp32 Keras model: build and fit a zoo model, or load the user's file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data import Dataset
from edgekit.errors import DataError, ModelError


def train(recipe, data: Dataset, log=print):
    """Build the recipe's zoo model and fit it on the training split.

    Uses the recipe seed for weights and shuffling, and early stopping on the validation split
    (restoring the best weights) when the recipe asks for it.

    Returns:
        (model, history) where history maps metric name to per-epoch values.
    """
    import tf_keras as keras

    from edgekit import models

    keras.utils.set_random_seed(recipe.seed)
    base_dir = recipe.path.parent if recipe.path else None
    model = models.build(recipe.model, data.input_shape, data.num_classes, base_dir)
    spec = recipe.train
    optimizer = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[spec.optimizer](learning_rate=spec.learning_rate)
    model.compile(optimizer=optimizer, loss=task_loss(recipe), metrics=["accuracy"])
    has_val = len(data.x_val) > 0
    callbacks = [EpochLog(log, spec.epochs)]
    if spec.early_stopping_patience and has_val:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=spec.early_stopping_patience, restore_best_weights=True
            )
        )
    history = model.fit(
        data.x_train, data.y_train,
        validation_data=(data.x_val, data.y_val) if has_val else None,
        epochs=spec.epochs, batch_size=spec.batch_size, shuffle=True, verbose=0,
        callbacks=callbacks,
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def task_loss(recipe) -> str:
    """The training loss of the recipe's task (also used to fine-tune compressed models)."""
    return {"classification": "sparse_categorical_crossentropy"}[recipe.task]


class EpochLog:
    """A tiny Keras callback that reports one line per epoch through ``log``."""

    def __new__(cls, log, epochs):
        import tf_keras as keras

        class EpochLog(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                shown = ", ".join(f"{k} {v:.4f}" for k, v in logs.items())
                log(f"  epoch {epoch + 1}/{epochs}: {shown}")

        return EpochLog()


def load_model_file(path: Path, safe_mode: bool = True):
    """Load a .keras, .h5 or SavedModel model.

    Tries Keras 2 (``tf_keras``) first, since compression needs it, then Keras 3.

    Returns:
        (model, flavour) where flavour is "tf_keras" or "keras3".
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model.file: not found: {path}; check the path (relative paths start at the recipe's folder)")
    import tf_keras

    errors = []
    try:
        kwargs = {"safe_mode": safe_mode} if path.suffix == ".keras" else {}
        return tf_keras.models.load_model(path, compile=False, **kwargs), "tf_keras"
    except Exception as exc:  # noqa: BLE001 - any failure means: try the other Keras
        errors.append(exc)
    if path.suffix in (".keras", ".h5"):
        import keras

        try:
            return keras.saving.load_model(path, compile=False, safe_mode=safe_mode), "keras3"
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    reason = str(errors[-1]).strip().splitlines()[0][:200] if errors else "unknown error"
    hint = (
        "it uses custom code blocked by safe mode: set model.safe_mode: false only if you trust the file"
        if "safe_mode" in reason or "Lambda" in reason
        else "is it a complete .keras, .h5 or SavedModel saved by Keras?"
    )
    raise ModelError(f"model.file: cannot load {path}: {reason}; {hint}")


def check_fits(model, data: Dataset) -> None:
    """Fail early, with the fix, when the data does not fit the model's input or output."""
    expected = tuple(model.inputs[0].shape)[1:]
    got = data.input_shape
    if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
        raise DataError(
            f"data shape {list(got)} does not fit the model input {list(expected)}; "
            "reshape the data or use a model built for this shape"
        )
    outputs = model.outputs[0].shape[-1]
    if outputs is not None and outputs < data.num_classes:
        raise DataError(
            f"the data has {data.num_classes} classes but the model outputs {outputs} values; "
            "use a model with one output per class"
        )


def save_model(model, folder: Path) -> Path:
    """Save the fp32 model in its own Keras format and return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    model.save(path)
    return path


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Outputs of a Keras model on many samples (used for the baseline metric)."""
    outs = [np.asarray(model(x[i : i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs).astype(np.float32)


def describe(model) -> dict[str, Any]:
    return {"name": model.name, "parameters": int(model.count_params()), "input_shape": list(model.inputs[0].shape[1:])}
