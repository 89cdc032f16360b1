"""Shared by every compression step: copy a model, fine-tune it like the base model."""

from __future__ import annotations


def copy_model(model):
    """A new model with the same weights: tfmot wraps layers in place, so never hand it the parent."""
    import tf_keras as keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def fine_tune(model, data, recipe, epochs: int, learning_rate: float | None, log, callbacks=(), name: str | None = None):
    """Compile with the base model's loss and fit on the training split (validation for logs);
    ``name`` (the compressed model's) names its epoch lines and progress bar.

    The loss is the base model's: ``from_logits=True`` where the model outputs logits (asked of
    the model itself, through the pruning and quantization wrappers).
    """
    import tf_keras as keras

    from edgekit.train.fit import EpochLog, fit_data, model_output, task_loss, task_metrics

    lr = learning_rate or recipe.train.learning_rate / 10
    x, y, validation = fit_data(recipe, data)  # autoencoders fit their inputs
    loss = task_loss(recipe, model_output(model, recipe.task, x))
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=task_metrics(recipe))
    keras.utils.set_random_seed(recipe.seed)
    model.fit(
        x, y,
        validation_data=validation,
        epochs=epochs, batch_size=recipe.train.batch_size, shuffle=True, verbose=0,
        callbacks=[*callbacks, EpochLog(log, epochs, name or "compressed")],
    )
    return model


def steps_per_epoch(data, recipe) -> int:
    return max(1, -(-len(data.x_train) // recipe.train.batch_size))
