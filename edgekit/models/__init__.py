"""The model zoo: a table of name -> builder, and user builders named in the recipe.

Builders take ``(input_shape, num_classes, **params)`` and return an uncompiled ``tf_keras``
model (Keras 2, so tensorflow-model-optimization can prune and quantize it later). Each
builder imports ``tf_keras`` inside the function, so reading this table stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import ModelError, did_you_mean
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


def build(spec, input_shape: tuple[int, ...], num_classes: int, base_dir: Path | None = None):
    """Build the recipe's model (zoo ``arch`` or user ``python`` builder) for the data shape.

    Args:
        spec: the recipe's ``model`` section.
        input_shape: shape of one sample.
        num_classes: number of outputs.
        base_dir: the recipe's folder; modules there are importable by ``model.python``.
    """
    builder = ZOO[spec.arch] if spec.arch else _import_builder(spec.python, base_dir)
    try:
        model = builder(tuple(input_shape), num_classes, **spec.params)
    except TypeError as exc:
        raise ModelError(f"model: cannot call {spec.source} with params {spec.params}: {exc}; check model.params") from None
    import tf_keras

    if not isinstance(model, tf_keras.Model):
        raise ModelError(
            f"model.python: {spec.python} returned {type(model).__name__}, expected a tf_keras model; "
            "build it with `import tf_keras as keras` so it can be trained and compressed"
        )
    return model


def _import_builder(target: str, base_dir: Path | None):
    module_name, _, attr = target.partition(":")
    added = base_dir is not None and str(base_dir) not in sys.path
    if added:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(
            f"model.python: cannot import {module_name} ({exc}); put {module_name.replace('.', '/')}.py "
            "next to the recipe or install its package"
        ) from None
    finally:
        if added:
            sys.path.remove(str(base_dir))
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ModelError(f"model.python: {module_name} has no function {attr}{did_you_mean(attr, dir(module))}")
    return builder
