"""The model zoo: a table of name -> builder, plus loading of user model files.

Builders take ``(input_shape, num_classes, **params)`` and return an uncompiled ``tf_keras``
model (Keras 2, so tensorflow-model-optimization can prune and quantize it later). Each
builder imports ``tf_keras`` inside the function, so reading this table stays cheap.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from edgekit.errors import did_you_mean
from edgekit.models import cnn, mlp, resnet8

ZOO: dict[str, Callable[..., Any]] = {
    "mlp": mlp.build,
    "cnn": cnn.build,
    "resnet8": resnet8.build,
}


def builder_params(arch: str) -> dict[str, Any]:
    """Return the recipe parameters of a zoo builder with their defaults."""
    signature = inspect.signature(ZOO[arch])
    return {
        name: p.default
        for name, p in list(signature.parameters.items())[2:]  # skip input_shape, num_classes
    }


def check_params(arch: str, params: dict[str, Any]) -> str | None:
    """Return a message for the first unknown parameter of ``arch``, or None."""
    known = builder_params(arch)
    for key in params:
        if key not in known:
            return (
                f'unknown parameter "{key}" for model "{arch}"{did_you_mean(key, known)}; '
                f"known: {', '.join(known)}"
            )
    return None


def build(arch: str, input_shape: tuple[int, ...], num_classes: int, params: dict[str, Any]):
    """Build a zoo model for the given data shape."""
    return ZOO[arch](tuple(input_shape), num_classes, **params)
