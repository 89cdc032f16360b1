"""Multi-layer perceptron for flat or small inputs (tabular data, 8x8 digits)."""

from __future__ import annotations

from edgekit.models._common import as_tuple, head

TASKS = ("classification", "regression")


def build(input_shape, num_classes, task="classification", hidden=(64, 32), dropout=0.0, activation="relu"):
    """A stack of Dense layers on the flattened input.

    Args:
        input_shape: shape of one sample; flattened first.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        hidden: units of each hidden Dense layer.
        dropout: dropout rate after each hidden layer (0 disables it).
        activation: activation of the hidden layers.
    """
    import tf_keras as keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Flatten()(inputs)
    for units in as_tuple(hidden, "hidden"):
        x = keras.layers.Dense(units, activation=activation)(x)
        if dropout:
            x = keras.layers.Dropout(float(dropout))(x)
    return keras.Model(inputs, head(x, num_classes, task), name="mlp")
