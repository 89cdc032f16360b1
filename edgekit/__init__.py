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

#: the Python API (edgekit.api), imported on first use: `import edgekit` and `edgekit --help`
#: stay light (no TensorFlow, no pandas)
__all__ = ["Results", "__version__", "bench", "build", "check", "load"]


class _CallablePackage(type(os)):
    """A subpackage that is also its API function: ``edgekit.check`` and ``edgekit.bench`` are
    packages (``edgekit.check.gate``), and once imported the package is what ``edgekit.check``
    names, so calling it must do what ``edgekit.api.check`` does."""

    def __call__(self, *args, **kwargs):
        from edgekit import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def _callable_package(name: str) -> None:
    """Make the package ``name`` (edgekit.check, edgekit.bench) callable as its API function."""
    import sys

    sys.modules[name].__class__ = _CallablePackage


def __getattr__(name: str):
    if name in ("check", "bench"):  # the subpackages, callable (_CallablePackage)
        import importlib

        return importlib.import_module(f"edgekit.{name}")
    if name in ("build", "load", "Results"):
        from edgekit import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
