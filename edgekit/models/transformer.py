"""Small Transformer encoders: ``transformer`` for sequences, ``vit`` for images (patches).

Both are a linear embedding, a learned position embedding, pre-norm encoder blocks
(multi-head self-attention + a feed-forward network, each with a residual) and mean pooling
over the tokens. No class token and no masks: inputs have a fixed length, which keeps every op
convertible to TFLite (full-integer), ONNX and OpenVINO. The feed-forward activation is ReLU by
default: Keras' exact GELU becomes an Erfc op in TensorFlow, which tf2onnx writes into the
ONNX graph although ONNX has no such op, so onnxruntime refuses the file.
"""

from __future__ import annotations

from edgekit.models._common import head, require

TASKS = ("classification", "regression")

_position_layer = None


def position_embedding_class():
    """The learned position embedding layer: adds a trainable (tokens, dim) table to its input.

    Registered with tf_keras as ``edgekit>PositionEmbedding`` when first asked for, so a
    saved model reloads after this is called (``edgekit.models.register_custom_layers``).
    Created lazily to keep TensorFlow out of imports.
    """
    global _position_layer
    if _position_layer is None:
        import tf_keras as keras

        @keras.saving.register_keras_serializable(package="edgekit")
        class PositionEmbedding(keras.layers.Layer):
            def build(self, input_shape):
                self.embedding = self.add_weight(
                    name="embedding", shape=tuple(input_shape[1:]),
                    initializer=keras.initializers.RandomNormal(stddev=0.02),
                )

            def call(self, x):
                return x + self.embedding

        _position_layer = PositionEmbedding
    return _position_layer


def position_embedding(**kwargs):
    """A new position embedding layer (see ``position_embedding_class``)."""
    return position_embedding_class()(**kwargs)


def _encoder(x, embed_dim, heads, layers, ff_dim, dropout, activation):
    import tf_keras as keras

    L = keras.layers
    for _ in range(int(layers)):
        y = L.LayerNormalization(epsilon=1e-6)(x)
        y = L.MultiHeadAttention(int(heads), int(embed_dim) // int(heads), dropout=float(dropout))(y, y)
        x = L.Add()([x, y])
        y = L.LayerNormalization(epsilon=1e-6)(x)
        y = L.Dense(int(ff_dim), activation=activation)(y)
        y = L.Dense(int(embed_dim))(y)
        if dropout:
            y = L.Dropout(float(dropout))(y)
        x = L.Add()([x, y])
    x = L.LayerNormalization(epsilon=1e-6)(x)
    return L.GlobalAveragePooling1D()(x)


def _check(embed_dim, heads, layers):
    require(int(heads) >= 1 and int(embed_dim) % int(heads) == 0,
            f"embed_dim ({embed_dim}) must be a multiple of heads ({heads})")
    require(int(layers) >= 1, f"layers: expected an integer >= 1, received {layers!r}")


def transformer(input_shape, num_classes, task="classification", embed_dim=32, heads=4, layers=2, ff_dim=64, dropout=0.1,
                activation="relu"):
    """A Transformer encoder over the steps of a sequence (steps, channels).

    Args:
        input_shape: (steps, channels), or (steps,) for one channel.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        embed_dim: token width; each step's channels are projected to it.
        heads: attention heads (embed_dim must be a multiple).
        layers: encoder blocks.
        ff_dim: hidden units of each block's feed-forward network.
        dropout: dropout in attention and feed-forward layers.
        activation: feed-forward activation; "gelu" (exact) does not convert to ONNX.
    """
    import tf_keras as keras

    require(len(input_shape) in (1, 2), f"transformer needs sequences of shape (steps, channels), received {list(input_shape)}")
    _check(embed_dim, heads, layers)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 1 else inputs
    x = position_embedding(name="position")(keras.layers.Dense(int(embed_dim))(x))
    x = _encoder(x, embed_dim, heads, layers, ff_dim, dropout, activation)
    return keras.Model(inputs, head(x, num_classes, task), name="transformer")


def vit(input_shape, num_classes, task="classification", patch_size=4, embed_dim=32, heads=4, layers=2, ff_dim=64, dropout=0.1,
        activation="relu"):
    """A Vision Transformer: non-overlapping patches as tokens, then the same encoder.

    Args:
        input_shape: (H, W) or (H, W, C); H and W must be multiples of patch_size.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        patch_size: side of the square patches (a strided convolution embeds each).
        embed_dim: token width.
        heads: attention heads (embed_dim must be a multiple).
        layers: encoder blocks.
        ff_dim: hidden units of each block's feed-forward network.
        dropout: dropout in attention and feed-forward layers.
        activation: feed-forward activation; "gelu" (exact) does not convert to ONNX.
    """
    import tf_keras as keras

    require(len(input_shape) in (2, 3), f"vit needs images of shape (H, W, C), received {list(input_shape)}")
    _check(embed_dim, heads, layers)
    p = int(patch_size)
    height, width = input_shape[0], input_shape[1]
    require(p >= 1 and height % p == 0 and width % p == 0,
            f"patch_size {patch_size} must divide the image size {height}x{width}")
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Reshape((*input_shape, 1))(inputs) if len(input_shape) == 2 else inputs
    x = keras.layers.Conv2D(int(embed_dim), p, strides=p)(x)
    x = keras.layers.Reshape(((height // p) * (width // p), int(embed_dim)))(x)
    x = position_embedding(name="position")(x)
    x = _encoder(x, embed_dim, heads, layers, ff_dim, dropout, activation)
    return keras.Model(inputs, head(x, num_classes, task), name="vit")
