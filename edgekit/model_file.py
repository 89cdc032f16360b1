"""How a model file becomes the Keras model a build measures, beyond what a Keras loader does.

``edgekit.train.load_model_file`` decides; this module holds its parts: which Keras reads a
file (the one that saved it), the classes a file names from the user's own modules (imported
only with safe mode off), a subclassed model traced to a functional graph, a SavedModel folder
without a Keras model served by its signature (``edgekit.saved_model``), and why a file did not
load, in one line.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import re
import sys
import zipfile
from pathlib import Path

from edgekit.errors import ModelError, one_line


def serving_signature(path: Path, sample_shape, safe_mode: bool, opt_out: str, log,
                      why: str = "a TensorFlow SavedModel without a Keras model"):
    """The SavedModel at ``path`` as a Keras 3 model of its serving signature, said in the log
    (``why``: what the folder is that its signature stands for it)."""
    from edgekit import saved_model

    model = saved_model.as_keras_model(path, sample_shape, safe_mode, opt_out)
    layer = model.get_layer("saved_model")
    shown = ", ".join(f"{t.name} {list(t.shape[1:])} {t.dtype}" for t in model.inputs)
    log(f"[model] {path.name}: {why}: its {layer.call_endpoint} signature "
        f"({shown}) is the model, run by TensorFlow as one Keras 3 layer")
    return model


def revived_layers(model) -> list[str]:
    """The class names of layers (nested models' too) that tf_keras revived from a SavedModel's
    graph because their Python class was not importable (basic-pitch's CQT2010v2, ...): such a
    model runs, but no Keras saves and loads it again (its config names classes nobody defines)."""
    found, stack = [], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop(0)
        if type(layer).__module__.endswith("saved_model.load") and type(layer).__name__ not in found:
            found.append(type(layer).__name__)
        stack += list(getattr(layer, "layers", []) or [])
    return found


def user_classes(path: Path, import_dirs=()) -> dict:
    """The classes a model file names from modules outside Keras (a subclassed model's own
    class), imported: ``{registered name or class name: class}``, the loaders' custom objects.
    Keras 3 no longer imports a module a file names; so, with safe mode off, edgekit does.

    Raises:
        ModelError: a module that cannot be imported, or that lacks the class.
    """
    from edgekit.model_safety import read_configs

    found: dict = {}
    for config in read_configs(path):
        for obj in _objects(config.data):
            module, name = obj.get("module"), obj.get("class_name")
            if name == "function":  # a function of the user's (an activation): its name is the config
                name = obj.get("config")
            if not (isinstance(module, str) and isinstance(name, str)) or module.split(".")[0] in _NOT_USER_MODULES:
                continue
            where = f"the recipe's folder ({import_dirs[0]})" if import_dirs else "the import path"
            try:
                cls = getattr(importlib.import_module(module), name)
            except ImportError as exc:
                raise ModelError(f"model.file: {path}: its class {name} is defined in the Python module {module}, which "
                                 f"cannot be imported ({one_line(exc, 150)}); put {module.replace('.', '/')}.py in "
                                 f"{where} or install it") from None
            except AttributeError:
                raise ModelError(f"model.file: {path}: the Python module {module} has no class {name}; put the module "
                                 f"that defines it in {where}") from None
            found[name] = cls
            if isinstance(obj.get("registered_name"), str):
                found[obj["registered_name"]] = cls
    return found


#: top-level packages whose classes the loaders find themselves
_NOT_USER_MODULES = {"keras", "tf_keras", "tensorflow", "builtins", "tensorflow_model_optimization"}


def _objects(data):
    """Every serialized object (a dict with a class_name) in a parsed model config."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                yield item
            stack += list(item.values())
        elif isinstance(item, list):
            stack += item


def load_keras(path: Path, safe_mode: bool, custom: dict | None = None):
    """(model, flavour, errors): the file read by the Keras that saved it, or (None, None, the
    loaders' exceptions). A Keras 3 ``.keras`` file goes to Keras 3 only: tf_keras "loads" a
    subclassed one into the Keras 3 class without its weights (untrained outputs, no error).
    ``custom``: classes from the user's modules (``user_classes``)."""
    import keras
    import tf_keras

    errors: list[Exception] = []
    saved_by = saved_by_keras(path)
    if saved_by != "3":
        try:
            # tf_keras takes safe_mode only for .keras; its scope also guards Lambda in the legacy formats.
            with _tf_keras_safe_mode(safe_mode):
                model = tf_keras.models.load_model(path, compile=False, safe_mode=safe_mode, custom_objects=custom)
            if isinstance(model, tf_keras.Model):
                return model, "tf_keras", errors
            errors.append(TypeError(f"tf_keras read a {type(model).__name__}, not a Keras model"))
        except Exception as exc:  # noqa: BLE001 - any failure means: try the other Keras
            errors.append(exc)
    if path.suffix in (".keras", ".h5") or saved_by == "3":
        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode, custom_objects=custom)
            if isinstance(model, keras.Model):
                return model, "keras3", errors
            errors.append(TypeError(f"Keras read a {type(model).__name__}, not a Keras model"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    return None, None, errors


def saved_by_keras(path: Path) -> str | None:
    """The major version of the Keras that wrote a ``.keras`` zip ("2" for tf_keras, "3"), from
    its metadata.json; None for any other file or when it does not say."""
    try:
        if not (path.is_file() and zipfile.is_zipfile(path)):
            return None
        with zipfile.ZipFile(path) as archive:
            version = json.loads(archive.read("metadata.json")).get("keras_version", "")
        return str(version).split(".", 1)[0] or None
    except (KeyError, OSError, ValueError, AttributeError, zipfile.BadZipFile):
        return None


def load_failure(errors: list[Exception], safe_mode: bool, import_dirs) -> str:
    """Why no Keras read the file, and what to do, in one line."""
    reason = one_line(errors[-1], 200, typed=False) if errors else "unknown error"
    missing = re.search(r"(?:Could not locate|Unknown) (?:class|layer|object)[^']*'([^']+)'", reason)
    if missing and not safe_mode:
        where = f"the recipe's folder ({import_dirs[0]})" if import_dirs else "the import path"
        return (f"the class {missing.group(1)} it names cannot be imported; put the module that defines it (see "
                f"the file's config.json \"module\") in {where} or install it, and decorate the class with "
                "@keras.saving.register_keras_serializable()")
    if "safe_mode" in reason or "Lambda" in reason:
        return f"{reason}; it uses custom code blocked by safe mode: set model.safe_mode: false only if you trust the file"
    return f"{reason}; is it a complete .keras, .h5 or SavedModel saved by Keras?"


def subclassed_layer(model) -> str | None:
    """The class name of a subclassed model inside ``model`` (what ``traced`` wraps), or None."""
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "layers") and type(layer).__name__ not in ("Functional", "Sequential", "Model"):
            if callable(getattr(layer, "call", None)) and hasattr(layer, "compile"):
                return type(layer).__name__
    return None


def graph_inputs(model):
    """The model's symbolic inputs, or None for a subclassed model (no graph to convert)."""
    try:
        inputs = model.inputs
    except AttributeError:  # Keras 3: a subclassed model has no inputs at all
        return None
    return inputs or None


def traced(model, sample_shape, path: Path):
    """A subclassed model as a functional one: called once on a ``keras.Input`` of the data's
    sample shape (float32, as edgekit feeds it), with the Keras that made it. Converters then
    see one graph; the subclassed model is one layer of it.

    Raises:
        ModelError: no sample shape, or the model cannot be called on it.
    """
    if sample_shape is None:
        raise ModelError(f"model.file: {path}: a subclassed model ({type(model).__name__}) has no input shape of its "
                         "own; edgekit traces it on the data's sample shape: give the data")
    import keras
    import tf_keras

    made_by = tf_keras if isinstance(model, tf_keras.Model) else keras
    inputs = made_by.Input(shape=tuple(sample_shape), dtype="float32", name="input")
    try:
        outputs = model(inputs, training=False)
    except Exception as exc:  # noqa: BLE001 - the model's own call() refuses the shape
        raise ModelError(f"model.file: {path}: the subclassed {type(model).__name__} cannot be called on samples of "
                         f"shape {list(sample_shape)} ({one_line(exc, 200)}); give data of the shape it was built "
                         "for, or save it as a functional model") from None
    return made_by.Model(inputs, outputs, name=model.name)


@contextlib.contextmanager
def importable(folders):
    """``folders`` first on the import path while loading (a subclassed model's module lives
    next to the recipe), removed again after."""
    added = [str(folder) for folder in folders if folder and str(folder) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for folder in added:
            if folder in sys.path:
                sys.path.remove(folder)


def _tf_keras_safe_mode(safe_mode: bool):
    """tf_keras' safe-mode scope (private API; a no-op scope if it moves): a second guard, not the check."""
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:
        return contextlib.nullcontext()
    return SafeModeScope(safe_mode)


def class_sources(model) -> list[str]:
    """The source of each module defining one of ``model``'s classes outside Keras (a
    subclassed model's): editing it changes what the model computes."""
    from edgekit.evaluate.worker import custom_layers

    texts = []
    for module, _ in custom_layers(model):
        try:
            texts.append(inspect.getsource(sys.modules[module]))
        except (KeyError, OSError, TypeError):
            texts.append(module)
    return texts
