"""DS-CNN, the MLPerf Tiny keyword-spotting network (depthwise-separable convolutions).

Made for MFCC "images" (49 frames x 10 coefficients x 1); any (H, W, C) input works, e.g. a
multichannel time series as (time, channels, 1) or small grey images.
"""

from __future__ import annotations

from edgekit.models._common import as_tuple, batch_norm, head, require

TASKS = ("classification", "regression")


def build(input_shape, num_classes, task="classification", filters=64, blocks=4, first_kernel=(10, 4),
          first_strides=(2, 2), dropout=0.2):
    """A strided stem convolution, then depthwise 3x3 + pointwise 1x1 blocks, average pooling.

    Args:
        input_shape: (H, W) or (H, W, C); a channel axis is added for (H, W).
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        filters: channels of the stem and of every pointwise convolution (64 in MLPerf Tiny).
        blocks: number of depthwise-separable blocks (4 in MLPerf Tiny).
        first_kernel: kernel of the stem convolution, (10, 4) for 49x10 MFCCs.
        first_strides: strides of the stem convolution.
        dropout: dropout rate before the stem's output and the classifier.
    """
    import tf_keras as keras

    require(len(input_shape) in (2, 3), f"dscnn needs (H, W) or (H, W, C) inputs, received {list(input_shape)}")
    require(int(blocks) >= 1, f"blocks: expected an integer >= 1, received {blocks!r}")
    (filters,) = as_tuple(filters, "filters")
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 2 else inputs
    # The stem kernel may not exceed the input: clip it for small inputs.
    kernel = tuple(min(k, s) for k, s in zip(as_tuple(first_kernel, "first_kernel"), input_shape[:2]))
    x = layers.Conv2D(filters, kernel, strides=as_tuple(first_strides, "first_strides"), padding="same", use_bias=False)(x)
    x = layers.ReLU()(batch_norm()(x))
    if dropout:
        x = layers.Dropout(float(dropout))(x)
    for _ in range(int(blocks)):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(batch_norm()(x))
        x = layers.Conv2D(filters, 1, use_bias=False)(x)
        x = layers.ReLU()(batch_norm()(x))
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(float(dropout))(x)
    return keras.Model(inputs, head(x, num_classes, task), name="dscnn")
