"""Pieces shared by the zoo builders: the task head and parameter checks."""

from __future__ import annotations


def head(x, num_outputs: int, task: str, name: str = "output"):
    """The output layer for a per-sample task: softmax for classification, linear for regression."""
    import tf_keras as keras

    activation = None if task == "regression" else "softmax"
    return keras.layers.Dense(num_outputs, activation=activation, name=name)(x)


def as_tuple(value, name: str) -> tuple[int, ...]:
    """A parameter given as one int or a list of ints, as a tuple of positive ints."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not values or any(int(v) != v or v <= 0 for v in values):
        raise ValueError(f"{name}: expected a positive integer or a list of them, received {value!r}")
    return tuple(int(v) for v in values)


def require(condition: bool, message: str) -> None:
    """Raise ValueError(message) when a parameter or input shape does not fit the builder.

    models.build turns it into a one-line ModelError naming the model.
    """
    if not condition:
        raise ValueError(message)


def batch_norm():
    """BatchNormalization whose moving statistics keep up with short trainings.

    Keras' default momentum (0.99) needs several hundred steps before the inference-time
    statistics match the data; the small offline sets here give 5 to 40 steps per epoch, and
    with 0.99 a DS-CNN on BasicMotions trained to 97% while its inference mode (what every
    exported format runs) stayed at chance. 0.9 follows within a few dozen steps.
    """
    import tf_keras as keras

    return keras.layers.BatchNormalization(momentum=0.9)
