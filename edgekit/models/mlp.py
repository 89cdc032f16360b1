"""Multi-layer perceptron for flat or small inputs (tabular data, 8x8 digits)."""

from __future__ import annotations


def build(input_shape, num_classes, hidden=(64, 32), dropout=0.0, activation="relu"):
    """A stack of Dense layers.

    Args:
        input_shape: shape of one sample; flattened first.
        num_classes: size of the softmax output.
        hidden: units of each hidden Dense layer.
        dropout: dropout rate after each hidden layer (0 disables it).
        activation: activation of the hidden layers.
    """
    import tf_keras as keras

    layers = [keras.layers.Input(shape=input_shape), keras.layers.Flatten()]
    for units in hidden:
        layers.append(keras.layers.Dense(int(units), activation=activation))
        if dropout:
            layers.append(keras.layers.Dropout(float(dropout)))
    layers.append(keras.layers.Dense(num_classes, activation="softmax"))
    return keras.Sequential(layers, name="mlp")
