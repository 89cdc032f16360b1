"""A small LeNet-style convolutional network for images (HxW or HxWxC)."""

from __future__ import annotations


def build(input_shape, num_classes, filters=(8, 16), kernel_size=3, dense=32, dropout=0.0):
    """Conv-ReLU-MaxPool blocks, then one hidden Dense layer.

    Args:
        input_shape: (H, W) or (H, W, C); a channel axis is added for (H, W).
        num_classes: size of the softmax output.
        filters: output channels of each conv block.
        kernel_size: square kernel size of every convolution.
        dense: units of the hidden Dense layer (0 leaves it out).
        dropout: dropout rate before the classifier (0 disables it).
    """
    import tf_keras as keras

    layers = [keras.layers.Input(shape=input_shape)]
    if len(input_shape) == 2:
        layers.append(keras.layers.Reshape((*input_shape, 1)))
    height, width = input_shape[0], input_shape[1]
    for n in filters:
        layers.append(keras.layers.Conv2D(int(n), kernel_size, padding="same", activation="relu"))
        # Pool only while the feature map is still big enough to halve.
        if height >= 4 and width >= 4:
            layers.append(keras.layers.MaxPooling2D())
            height, width = height // 2, width // 2
    layers.append(keras.layers.Flatten())
    if dense:
        layers.append(keras.layers.Dense(int(dense), activation="relu"))
    if dropout:
        layers.append(keras.layers.Dropout(float(dropout)))
    layers.append(keras.layers.Dense(num_classes, activation="softmax"))
    return keras.Sequential(layers, name="cnn")
