"""Autoencoders for anomaly detection: dense, or convolutional for sequences and images.

Trained to reconstruct normal samples; the reconstruction error scores anomalies. The output
has the input's shape and a linear activation.
"""

from __future__ import annotations

import math

from edgekit.models._common import as_tuple, require

TASKS = ("anomaly",)


def build(input_shape, num_classes, task="anomaly", kind="dense", hidden=(64, 32), latent=8, filters=(16, 32), kernel_size=5):
    """An encoder to a small code and a mirrored decoder back to the input shape.

    Args:
        input_shape: any shape for kind "dense"; (steps, channels) or (H, W, C) for "conv".
        num_classes: unused (the output has the input's shape).
        task: anomaly.
        kind: "dense" (flatten, Dense layers) or "conv" (strided convolutions, each halving
            the length or the image side, and transposed convolutions back).
        hidden: dense: units of the encoder's hidden layers (the decoder mirrors them).
        latent: dense: size of the code.
        filters: conv: channels of each strided convolution.
        kernel_size: conv: kernel length or side.
    """
    import tf_keras as keras

    require(kind in ("dense", "conv"), f'kind: expected "dense" or "conv", received {kind!r}')
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    if kind == "dense":
        x = layers.Flatten()(inputs)
        hidden = as_tuple(hidden, "hidden")
        for units in hidden:
            x = layers.Dense(units, activation="relu")(x)
        x = layers.Dense(int(latent), activation="relu", name="code")(x)
        for units in reversed(hidden):
            x = layers.Dense(units, activation="relu")(x)
        x = layers.Dense(math.prod(input_shape))(x)
        outputs = layers.Reshape(input_shape)(x)
        return keras.Model(inputs, outputs, name="autoencoder_dense")

    require(len(input_shape) in (2, 3), f"a conv autoencoder needs (steps, channels) or (H, W, C) inputs, received {list(input_shape)}")
    filters = as_tuple(filters, "filters")
    scale = 2 ** len(filters)
    require(all(side % scale == 0 for side in input_shape[:-1]),
            f"a conv autoencoder with {len(filters)} levels needs sides divisible by {scale}, received {list(input_shape)}")
    conv, transpose = (layers.Conv1D, layers.Conv1DTranspose) if len(input_shape) == 2 else (layers.Conv2D, layers.Conv2DTranspose)
    x = inputs
    for n in filters:
        x = conv(n, int(kernel_size), strides=2, padding="same", activation="relu")(x)
    for n in reversed(filters):
        x = transpose(n, int(kernel_size), strides=2, padding="same", activation="relu")(x)
    outputs = conv(input_shape[-1], int(kernel_size), padding="same")(x)
    return keras.Model(inputs, outputs, name="autoencoder_conv")
