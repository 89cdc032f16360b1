"""edgekit: train, compress, convert and benchmark a Keras model for edge devices."""

import os

# TensorFlow's own tools (the TFLite converter's RNN fusion among them) follow `tf.keras`, which
# is Keras 3 unless TF_USE_LEGACY_KERAS is set, while edgekit builds tf_keras (Keras 2) models.
# tensorflow-model-optimization sets the variable when it is imported, so without this a GRU
# converted to int8 TFLite kept float ops in a plain build and lost them once compression had
# run. Set it once, up front, so every build converts the same way. Keras 3 files still load
# through `import keras`.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
