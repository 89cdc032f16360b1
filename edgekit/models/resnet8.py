"""ResNet-8, the MLPerf Tiny image-classification network (about 78k parameters at 32x32x3)."""

from __future__ import annotations

from edgekit.models._common import as_tuple, head, require

TASKS = ("classification", "regression")


def build(input_shape, num_classes, task="classification", filters=(16, 32, 64), weight_decay=1e-4):
    """Three residual stacks of two 3x3 convolutions each, then global average pooling.

    Args:
        input_shape: (H, W, C), e.g. (32, 32, 3).
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        filters: channels of the stem and of each residual stack; stacks after the first
            halve the spatial size.
        weight_decay: L2 regularisation of every convolution.
    """
    import tf_keras as keras

    require(len(input_shape) == 3, f"resnet8 needs images of shape (H, W, C), received {list(input_shape)}")
    layers = keras.layers
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None

    def conv(x, n, kernel=3, strides=1):
        return layers.Conv2D(n, kernel, strides=strides, padding="same", kernel_regularizer=reg)(x)

    filters = as_tuple(filters, "filters")
    inputs = keras.Input(shape=input_shape)
    x = layers.ReLU()(layers.BatchNormalization()(conv(inputs, filters[0])))
    for stack, n in enumerate(filters):
        strides = 1 if stack == 0 else 2
        y = layers.ReLU()(layers.BatchNormalization()(conv(x, n, strides=strides)))
        y = layers.BatchNormalization()(conv(y, n))
        # The shortcut needs a 1x1 projection wherever the shape changes.
        shortcut = x if strides == 1 and x.shape[-1] == n else conv(x, n, kernel=1, strides=strides)
        x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, head(x, num_classes, task), name="resnet8")
