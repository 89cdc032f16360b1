"""The model zoo: a table of name -> builder, and user builders named in the recipe.

Zoo builders take ``(input_shape, num_classes, task=..., **params)`` and return an uncompiled
``tf_keras`` model (Keras 2, so tensorflow-model-optimization can prune and quantize it later).
``num_classes`` is the number of outputs: classes, regression targets, or per-pixel classes.
Each module names the tasks its builders fit in ``TASKS`` and imports ``tf_keras`` inside its
functions, so reading this table stays cheap. User builders (``model.python``) are called with
``(input_shape, num_classes, **params)``, plus ``task=`` when their signature names it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import ModelError, did_you_mean, one_line
from edgekit.models import (
    applications,
    autoencoder,
    conv1d,
    dcgan,
    dscnn,
    lenet,
    mlp,
    mobilenet_v1,
    recurrent,
    resnet8,
    transformer,
    unet,
)
from edgekit.models import text as text_models

# name -> (builder, tasks it fits). Every builder is documented in `edgekit models`.
_TABLE: dict[str, tuple[Callable[..., Any], tuple[str, ...]]] = {
    "mlp": (mlp.build, mlp.TASKS),
    "lenet": (lenet.build, lenet.TASKS),
    "cnn": (lenet.build, lenet.TASKS),  # the first name of lenet; recipes still use it
    "resnet8": (resnet8.build, resnet8.TASKS),
    "dscnn": (dscnn.build, dscnn.TASKS),
    "mobilenet_v1": (mobilenet_v1.build, mobilenet_v1.TASKS),
    "mobilenet_v2": (applications.mobilenet_v2, applications.TASKS),
    "mobilenet_v3_small": (applications.mobilenet_v3_small, applications.TASKS),
    "efficientnet_b0": (applications.efficientnet_b0, applications.TASKS),
    "conv1d": (conv1d.build, conv1d.TASKS),
    "lstm": (recurrent.lstm, recurrent.TASKS),
    "gru": (recurrent.gru, recurrent.TASKS),
    "bilstm": (recurrent.bilstm, recurrent.TASKS),
    "text_pool": (text_models.text_pool, text_models.TASKS),
    "text_gru": (text_models.text_gru, text_models.TASKS),
    "transformer": (transformer.transformer, transformer.TASKS),
    "vit": (transformer.vit, transformer.TASKS),
    "autoencoder": (autoencoder.build, autoencoder.TASKS),
    "unet": (unet.build, unet.TASKS),
    "dcgan": (dcgan.build, dcgan.TASKS),
}
ZOO: dict[str, Callable[..., Any]] = {name: builder for name, (builder, _) in _TABLE.items()}
MODEL_TASKS: dict[str, tuple[str, ...]] = {name: tasks for name, (_, tasks) in _TABLE.items()}
ALIASES = {"cnn": "lenet"}
# Not recipe parameters: the data decides them.
_FIXED = ("input_shape", "num_classes", "task")


def builder_params(arch: str) -> dict[str, Any]:
    """Return the recipe parameters of a zoo builder with their defaults."""
    signature = inspect.signature(ZOO[arch])
    return {name: p.default for name, p in signature.parameters.items() if name not in _FIXED}


def describe(arch: str) -> dict[str, Any]:
    """Summary line, tasks, and each parameter's default and docstring line, for ``edgekit models``."""
    doc = inspect.getdoc(ZOO[arch]) or ""
    params = builder_params(arch)
    docs: dict[str, str] = {}
    current = None
    in_args = False
    for line in doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        if in_args and line and not line.startswith(" "):
            break  # the next section (Returns:, ...)
        if in_args and line.startswith("    ") and not line.startswith("        ") and ":" in line:
            current, _, text = line.strip().partition(":")
            docs[current] = text.strip()
        elif in_args and current and line.strip():
            docs[current] += " " + line.strip()
    return {
        "summary": doc.splitlines()[0] if doc else "",
        "tasks": MODEL_TASKS[arch],
        "alias_of": ALIASES.get(arch),
        "params": {name: (default, docs.get(name, "")) for name, default in params.items()},
    }


def register_custom_layers() -> None:
    """Register the zoo's own layer classes with tf_keras, so saved zoo models load."""
    transformer.position_embedding_class()


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


def build(spec, input_shape: tuple[int, ...], num_classes: int, base_dir: Path | None = None, task: str = "classification",
          vocab_size: int | None = None):
    """Build the recipe's model (zoo ``arch`` or user ``python`` builder) for the data shape.

    Args:
        spec: the recipe's ``model`` section.
        input_shape: shape of one sample.
        num_classes: number of outputs (classes, regression targets or per-pixel classes).
        base_dir: the recipe's folder; modules there are importable by ``model.python``.
        task: the recipe's task; passed to builders whose signature names ``task``.
        vocab_size: the data's vocabulary size (token ids 0..vocab_size-1), or None; passed to
            builders whose signature names ``vocab_size`` when model.params does not set it.
    """
    builder = ZOO[spec.arch] if spec.arch else _import_builder(spec.python, base_dir)
    if spec.arch and task not in MODEL_TASKS[spec.arch]:
        raise ModelError(f"model.arch: {spec.arch} fits tasks {', '.join(MODEL_TASKS[spec.arch])}, not {task}; "
                         f"models for {task}: {', '.join(models_for(task))}")
    kwargs = dict(spec.params)
    if "task" in inspect.signature(builder).parameters:
        kwargs["task"] = task
    if vocab_size and "vocab_size" in inspect.signature(builder).parameters:
        # The data's vocabulary (a text source's vocab.txt, imdb's 10000 words) sizes the
        # embedding unless model.params sets it; a smaller one would leave ids without a row.
        given = kwargs.get("vocab_size")
        if isinstance(given, (int, float)) and given < vocab_size:
            raise ModelError(f"model.params.vocab_size: {given} is smaller than the data's vocabulary ({vocab_size} ids); "
                             "remove it (the data's size is used) or raise it")
        kwargs["vocab_size"] = vocab_size if given is None else given
    try:
        model = builder(tuple(input_shape), num_classes, **kwargs)
    except TypeError as exc:
        raise ModelError(f"model: cannot call {spec.source} with params {spec.params}: {exc}; check model.params") from None
    except ValueError as exc:
        # Zoo builders raise ValueError for a parameter or input shape they cannot use.
        raise ModelError(f"model: {spec.source}: {exc}; change model.params or the data") from None
    except (MemoryError, OverflowError) as exc:
        raise ModelError(f"model: {spec.source} with params {spec.params} is too large to build ({type(exc).__name__}); "
                         "make it smaller in model.params") from None
    except Exception as exc:  # noqa: BLE001 - TensorFlow's own errors, e.g. ResourceExhaustedError for huge weights
        if type(exc).__name__ not in ("ResourceExhaustedError", "InvalidArgumentError"):
            raise
        first = one_line(exc, 200, typed=False) or type(exc).__name__
        raise ModelError(f"model: cannot build {spec.source} with params {spec.params}: {first}; "
                         "make it smaller in model.params") from None
    import tf_keras

    if not isinstance(model, tf_keras.Model):
        raise ModelError(
            f"model.python: {spec.python} returned {type(model).__name__}, expected a tf_keras model; "
            "build it with `import tf_keras as keras` so it can be trained and compressed"
        )
    return model


def models_for(task: str) -> list[str]:
    """Zoo names that fit ``task``, aliases left out."""
    return [name for name, tasks in MODEL_TASKS.items() if task in tasks and name not in ALIASES]


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
