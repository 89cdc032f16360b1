"""A tiny U-Net for semantic segmentation of small images (per-pixel classes)."""

from __future__ import annotations

from edgekit.models._common import as_tuple, batch_norm, require

TASKS = ("segmentation",)


def build(input_shape, num_classes, task="segmentation", filters=(8, 16, 32)):
    """Encoder of conv blocks and max pooling, a bottleneck, and a decoder with skip connections.

    Args:
        input_shape: (H, W) or (H, W, C); H and W divisible by 2 ** (len(filters) - 1).
        num_classes: classes per pixel (softmax over the last axis of the output).
        task: segmentation.
        filters: channels per level, the last one being the bottleneck.
    """
    import tf_keras as keras

    require(len(input_shape) in (2, 3), f"unet needs images of shape (H, W, C), received {list(input_shape)}")
    filters = as_tuple(filters, "filters")
    scale = 2 ** (len(filters) - 1)
    require(input_shape[0] % scale == 0 and input_shape[1] % scale == 0,
            f"unet with {len(filters)} levels needs H and W divisible by {scale}, received {list(input_shape)}")
    layers = keras.layers

    def block(x, n):
        for _ in range(2):
            x = layers.Conv2D(n, 3, padding="same", use_bias=False)(x)
            x = layers.ReLU()(batch_norm()(x))
        return x

    inputs = keras.Input(shape=input_shape)
    x = layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 2 else inputs
    skips = []
    for n in filters[:-1]:
        x = block(x, n)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = block(x, filters[-1])
    for n, skip in zip(reversed(filters[:-1]), reversed(skips)):
        x = layers.Conv2DTranspose(n, 2, strides=2, padding="same")(x)
        x = block(layers.Concatenate()([x, skip]), n)
    outputs = layers.Conv2D(num_classes, 1, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="unet")
