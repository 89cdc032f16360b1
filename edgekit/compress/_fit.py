"""Shared by every compression step: copy a model, fine-tune it like the base model."""

from __future__ import annotations


def copy_model(model):
    """A new model with the same weights: tfmot wraps layers in place, so never hand it the parent."""
    import tf_keras as keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def fine_tune(model, data, recipe, epochs: int, learning_rate: float | None, log, callbacks=()):
    """Compile with the base model's loss and fit on the training split (validation for logs)."""
    import tf_keras as keras

    from edgekit.train import EpochLog, task_loss

    lr = learning_rate or recipe.train.learning_rate / 10
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=task_loss(recipe), metrics=["accuracy"] if recipe.task == "classification" else [])
    keras.utils.set_random_seed(recipe.seed)
    has_val = len(data.x_val) > 0
    model.fit(
        data.x_train, data.y_train,
        validation_data=(data.x_val, data.y_val) if has_val else None,
        epochs=epochs, batch_size=recipe.train.batch_size, shuffle=True, verbose=0,
        callbacks=[*callbacks, EpochLog(log, epochs)],
    )
    return model


def steps_per_epoch(data, recipe) -> int:
    return max(1, -(-len(data.x_train) // recipe.train.batch_size))
