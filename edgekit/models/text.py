"""Text classifiers over int32 token id sequences (``data: {source: text}`` or imdb).

The embedding's rows are the data's vocabulary: ``vocab_size`` defaults to null, which means
"the size the data says" (``len(vocab.txt)`` of a text source, 10000 for imdb), filled in by
``edgekit.models.build``; set it only for token ids the data does not describe (an npz of ids:
the largest id + 1). The input is int32, so every artifact takes the ids themselves and int8
artifacts leave them unquantized (``edgekit.convert.input_dtype``).

- ``text_pool``: embedding, average (or max) over the sequence, a hidden layer: a fastText-
  style bag of words, tiny and fast; no masking, so the padding id's embedding is learned
  like any other (masked pooling adds ops that some int8 converters handle badly).
- ``text_gru``: embedding, then a GRU read in order: word order matters. The GRU is the
  zoo's (``edgekit.models.recurrent``): unrolled over the fixed sequence length and without
  bias, the form that converts to integer ops in every format (docs/models.md); long
  sequences make a long unrolled graph, so keep ``sequence_length`` modest (64-128).
"""

from __future__ import annotations

from edgekit.models._common import head, require

TASKS = ("classification", "regression")


def _embedded(input_shape, vocab_size, embedding_dim, name):
    import tf_keras as keras

    require(len(input_shape) == 1, f"{name} needs token id sequences of shape (sequence_length,), received {list(input_shape)}")
    require(vocab_size is not None, "vocab_size: the data does not say its vocabulary size (a text source or imdb "
            "does): set model.params.vocab_size to the largest token id + 1")
    require(int(vocab_size) == vocab_size and vocab_size >= 2, f"vocab_size: expected an integer >= 2, received {vocab_size!r}")
    require(int(embedding_dim) == embedding_dim and embedding_dim >= 1,
            f"embedding_dim: expected a positive integer, received {embedding_dim!r}")
    inputs = keras.Input(shape=input_shape, dtype="int32", name="tokens")
    return inputs, keras.layers.Embedding(int(vocab_size), int(embedding_dim), name="embedding")(inputs)


def text_pool(input_shape, num_classes, task="classification", vocab_size=None, embedding_dim=32, pooling="average",
              hidden=32, dropout=0.2):
    """Embedding, global pooling over the tokens, one hidden layer: a bag-of-words classifier.

    Args:
        input_shape: (sequence_length,): int32 token ids, 0 = padding, 1 = out of vocabulary.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        vocab_size: embedding rows; null: the data's vocabulary size (vocab.txt's lines).
        embedding_dim: width of each token's vector.
        pooling: average or max over the sequence.
        hidden: units of the hidden ReLU layer (0: none).
        dropout: dropout rate after pooling.
    """
    import tf_keras as keras

    require(pooling in ("average", "max"), f"pooling: expected average or max, received {pooling!r}")
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim, "text_pool")
    layers = keras.layers
    x = (layers.GlobalAveragePooling1D() if pooling == "average" else layers.GlobalMaxPooling1D())(x)
    if dropout:
        x = layers.Dropout(float(dropout))(x)
    if hidden:
        x = layers.Dense(int(hidden), activation="relu")(x)
    return keras.Model(inputs, head(x, num_classes, task), name="text_pool")


def text_gru(input_shape, num_classes, task="classification", vocab_size=None, embedding_dim=32, units=32, dropout=0.2):
    """Embedding, then a GRU over the tokens (unrolled, no bias: integer-convertible).

    Args:
        input_shape: (sequence_length,): int32 token ids, 0 = padding, 1 = out of vocabulary;
            pad in front (data.padding: pre, the default) so the GRU ends on real tokens.
        num_classes: classes (softmax) or regression targets (linear).
        task: classification or regression.
        vocab_size: embedding rows; null: the data's vocabulary size (vocab.txt's lines).
        embedding_dim: width of each token's vector.
        units: units of the GRU.
        dropout: dropout rate after the GRU.
    """
    import tf_keras as keras

    require(int(units) == units and units >= 1, f"units: expected a positive integer, received {units!r}")
    inputs, x = _embedded(input_shape, vocab_size, embedding_dim, "text_gru")
    # unroll + no bias: see edgekit.models.recurrent (a rolled GRU crashes the int8 converter).
    x = keras.layers.GRU(int(units), unroll=True, use_bias=False)(x)
    if dropout:
        x = keras.layers.Dropout(float(dropout))(x)
    return keras.Model(inputs, head(x, num_classes, task), name="text_gru")
