"""edgekit: train, compress, convert and benchmark a Keras model for edge devices."""

__version__ = "0.1.0"
