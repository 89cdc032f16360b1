"""LeNet-style convolutional network for small images (HxW or HxWxC); also zoo name ``cnn``."""

from __future__ import annotations

from edgekit.models._common import as_tuple, head, require

TASKS = ("classification", "regression")


def build(input_shape, num_classes, task="classification", filters=(8, 16), kernel_size=3, dense=32, dropout=0.0):
    """Conv-ReLU-MaxPool blocks, then one hidden Dense layer (LeNet-5 layout, ReLU, same padding).

    Args:
        input_shape: (H, W) or (H, W, C); a channel axis is added for (H, W).
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        filters: output channels of each conv block.
        kernel_size: square kernel size of every convolution.
        dense: units of the hidden Dense layer (0 leaves it out).
        dropout: dropout rate before the output layer (0 disables it).
    """
    import tf_keras as keras

    layers = keras.layers
    require(len(input_shape) in (2, 3), f"lenet needs images of shape (H, W) or (H, W, C), received {list(input_shape)}")
    inputs = keras.Input(shape=input_shape)
    x = layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 2 else inputs
    height, width = input_shape[0], input_shape[1]
    for n in as_tuple(filters, "filters"):
        x = layers.Conv2D(n, kernel_size, padding="same", activation="relu")(x)
        # Pool only while the feature map is still big enough to halve.
        if height >= 4 and width >= 4:
            x = layers.MaxPooling2D()(x)
            height, width = height // 2, width // 2
    x = layers.Flatten()(x)
    if dense:
        x = layers.Dense(int(dense), activation="relu")(x)
    if dropout:
        x = layers.Dropout(float(dropout))(x)
    return keras.Model(inputs, head(x, num_classes, task), name="lenet")
