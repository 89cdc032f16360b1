"""1-D CNN for time series and other sequences of shape (steps, channels)."""

from __future__ import annotations

from edgekit.models._common import as_tuple, batch_norm, head, require

TASKS = ("classification", "regression")


def build(input_shape, num_classes, task="classification", filters=(32, 64), kernel_size=5, dense=0, dropout=0.1):
    """Conv1D-BatchNorm-ReLU blocks (each but the last halves the length), global average pooling.

    Args:
        input_shape: (steps,) or (steps, channels); a channel axis is added for (steps,).
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        filters: channels of each convolution block.
        kernel_size: kernel length of every convolution.
        dense: units of a hidden Dense layer before the output (0 leaves it out).
        dropout: dropout rate before the output layer.
    """
    import tf_keras as keras

    require(len(input_shape) in (1, 2), f"conv1d needs sequences of shape (steps, channels), received {list(input_shape)}")
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 1 else inputs
    filters = as_tuple(filters, "filters")
    for i, n in enumerate(filters):
        x = layers.Conv1D(n, int(kernel_size), padding="same", use_bias=False)(x)
        x = layers.ReLU()(batch_norm()(x))
        if i < len(filters) - 1 and x.shape[1] >= 4:
            x = layers.MaxPooling1D()(x)
    x = layers.GlobalAveragePooling1D()(x)
    if dense:
        x = layers.Dense(int(dense), activation="relu")(x)
    if dropout:
        x = layers.Dropout(float(dropout))(x)
    return keras.Model(inputs, head(x, num_classes, task), name="conv1d")
