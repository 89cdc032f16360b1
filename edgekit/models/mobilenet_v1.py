"""MobileNetV1 (Howard et al. 2017) with a width multiplier, sized for small images.

At ``alpha`` 0.25 this is the MLPerf Tiny visual-wake-words network (there at 96x96x3).
"""

from __future__ import annotations

from edgekit.models._common import batch_norm, head, require

TASKS = ("classification", "regression")

# (pointwise channels at alpha 1, stride of the depthwise conv) of the 13 blocks.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def build(input_shape, num_classes, task="classification", alpha=0.25, blocks=13, dropout=0.1):
    """A 3x3 stride-2 stem, then depthwise-separable blocks, global average pooling.

    Args:
        input_shape: (H, W, C), e.g. (32, 32, 3) or (96, 96, 3).
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        alpha: width multiplier: every layer has ``alpha`` times the channels of the
            original (0.25, 0.5, 0.75, 1.0 are the published widths).
        blocks: how many of the 13 depthwise-separable blocks to keep (fewer for tiny inputs).
        dropout: dropout rate before the classifier.
    """
    import tf_keras as keras

    require(len(input_shape) == 3, f"mobilenet_v1 needs images of shape (H, W, C), received {list(input_shape)}")
    require(0 < float(alpha) <= 2, f"alpha: expected a width multiplier in (0, 2], received {alpha!r}")
    require(1 <= int(blocks) <= 13, f"blocks: expected 1 to 13, received {blocks!r}")
    layers = keras.layers

    def width(channels: int) -> int:
        # Round to a multiple of 8 like the Keras reference, never below 8.
        return max(8, int(channels * float(alpha) + 4) // 8 * 8)

    def conv_bn(x, channels, kernel, strides):
        x = layers.Conv2D(channels, kernel, strides=strides, padding="same", use_bias=False)(x)
        return layers.ReLU(6.0)(batch_norm()(x))

    inputs = keras.Input(shape=input_shape)
    x = conv_bn(inputs, width(32), 3, 2)
    for channels, strides in _BLOCKS[: int(blocks)]:
        # Stop halving once the map is 1 pixel wide; tiny inputs keep their last resolution.
        strides = strides if min(x.shape[1], x.shape[2]) > 1 else 1
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(x)
        x = layers.ReLU(6.0)(batch_norm()(x))
        x = conv_bn(x, width(channels), 1, 1)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(float(dropout))(x)
    return keras.Model(inputs, head(x, num_classes, task), name="mobilenet_v1")
