"""Recurrent networks for sequences of shape (steps, channels): LSTM, GRU and bidirectional LSTM.

Conversion notes (docs/models.md has the details):

- LSTM converts to TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM op, which has a full-integer
  kernel (int8 weights and activations, int16 cell state), so it is left rolled.
- GRU has no fused TFLite op: rolled, it becomes a WHILE loop, and full-integer conversion of
  that loop crashed the TFLite converter (segfault, TF 2.21). The GRU is therefore always
  unrolled over its fixed number of steps, which gives plain integer ops. It also has no
  bias: Keras stores the GRU bias as two stacked rows (reset_after=True) that the int8
  converter dequantizes to float to split, leaving float ops in the graph; reset_after=False
  avoids that but broke OpenVINO int8 (NNCF) and, with implementation=1, crashed OpenVINO's
  converter. Without a bias every variant converts and stays integer.
"""

from __future__ import annotations

from edgekit.models._common import as_tuple, head, require

TASKS = ("classification", "regression")


def _build(kind, input_shape, num_classes, task, units, dropout, name):
    import tf_keras as keras

    require(len(input_shape) in (1, 2), f"{name} needs sequences of shape (steps, channels), received {list(input_shape)}")
    layers = keras.layers
    units = as_tuple(units, "units")
    inputs = keras.Input(shape=input_shape)
    x = layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 1 else inputs
    for i, n in enumerate(units):
        more = i < len(units) - 1  # every layer but the last hands on the whole sequence
        if kind == "gru":
            # unroll: a rolled (WHILE) GRU crashes the int8 converter; no bias: see the module doc.
            layer = layers.GRU(n, return_sequences=more, unroll=True, use_bias=False)
        else:
            layer = layers.LSTM(n, return_sequences=more)
        x = layers.Bidirectional(layer)(x) if kind == "bilstm" else layer(x)
        if dropout:
            x = layers.Dropout(float(dropout))(x)
    return keras.Model(inputs, head(x, num_classes, task), name=name)


def lstm(input_shape, num_classes, task="classification", units=(64,), dropout=0.0):
    """Stacked LSTM layers; the last one's final state feeds the output layer.

    Args:
        input_shape: (steps, channels), or (steps,) for one channel.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        units: units of each LSTM layer.
        dropout: dropout rate after each LSTM layer.
    """
    return _build("lstm", input_shape, num_classes, task, units, dropout, "lstm")


def gru(input_shape, num_classes, task="classification", units=(64,), dropout=0.0):
    """Stacked GRU layers without bias, unrolled over the fixed steps (for integer TFLite).

    Args:
        input_shape: (steps, channels), or (steps,) for one channel.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        units: units of each GRU layer.
        dropout: dropout rate after each GRU layer.
    """
    return _build("gru", input_shape, num_classes, task, units, dropout, "gru")


def bilstm(input_shape, num_classes, task="classification", units=(32,), dropout=0.0):
    """Stacked bidirectional LSTM layers (forward and backward states concatenated).

    Args:
        input_shape: (steps, channels), or (steps,) for one channel.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        units: units of each direction of each layer.
        dropout: dropout rate after each layer.
    """
    return _build("bilstm", input_shape, num_classes, task, units, dropout, "bilstm")
