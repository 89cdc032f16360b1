"""Every model file edgekit reads, and how it becomes the Keras model a build measures.

``load_model_file`` reads a recipe's model file (.keras, .h5, a SavedModel folder), in safe
mode unless the recipe opts out (``edgekit.models.safety``); ``save_model`` writes the build's
own copy, which ``load_build_model`` reads back in a worker process or a probe; and
``file_input_shape`` reads a file's input shape from its config without TensorFlow (the data
of image folders). The rest are the loader's parts: which Keras reads a file (the one that
saved it), the classes a file names from the user's own modules (imported only with safe mode
off), a subclassed model traced to a functional graph, a SavedModel folder without a Keras
model served by its signature (``edgekit.models.saved_model``), and why a file did not load,
in one line.
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
from typing import Any

from edgekit.errors import ModelError, one_line


def serving_signature(path: Path, sample_shape, safe_mode: bool, opt_out: str, log,
                      why: str = "a TensorFlow SavedModel without a Keras model"):
    """The SavedModel at ``path`` as a Keras 3 model of its serving signature, said in the log
    (``why``: what the folder is that its signature stands for it)."""
    from edgekit.models import saved_model

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
    from edgekit.models.safety import read_configs

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

    texts = []
    for module, _ in custom_layers(model):
        try:
            texts.append(inspect.getsource(sys.modules[module]))
        except (KeyError, OSError, TypeError):
            texts.append(module)
    return texts


def load_model_file(path: Path, safe_mode: bool = True, sample_shape=None, import_dirs=(), opt_out: str | None = None,
                    log=None):
    """Load a .keras, .h5 or SavedModel model.

    A Keras file is read by the Keras that saved it (tf_keras first for legacy files, since
    compression needs it). A SavedModel folder with a tf_keras model in it loads as that model;
    any other SavedModel (``tf.saved_model.save``, Keras 3 ``export()``) becomes a Keras 3 model
    of its serving signature (``edgekit.models.saved_model``). In safe mode (the default) the file's
    config is checked first and a file that would run code it carries (a Lambda layer, a
    custom class, a foreign module) is refused, in every format: the loaders' own safe mode
    misses the tf_keras ``.h5`` and SavedModel formats. With safe mode off, ``import_dirs``
    (the recipe's folder) are importable while loading, so a subclassed model's own module is
    found; a subclassed model is then traced to a functional graph (``model_file.traced``).

    Args:
        path: the model file or folder.
        safe_mode: refuse files that would run code (see above).
        sample_shape: the data's sample shape (no batch axis): a subclassed model is traced on
            it, and it fixes a single SavedModel input's free dimensions.
        import_dirs: folders put first on the import path while loading with safe mode off.
        opt_out: how refusals name the opt-out (default: the recipe key).
        log: gets one line on what a SavedModel or subclassed model became.

    Returns:
        (model, flavour) where flavour is "tf_keras" or "keras3".

    Raises:
        ModelError: the file is missing, cannot be loaded, or is refused by safe mode.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model.file: not found: {path}; check the path (relative paths start at the recipe's folder)")
    if not (path.is_file() or path.is_dir()):  # a FIFO or device would block the readers
        raise ModelError(f"model.file: {path} is not a file or a folder; give a .keras or .h5 file or a SavedModel folder")
    from edgekit.models import register_custom_layers, saved_model
    from edgekit.models.file_checks import check_file
    from edgekit.models.safety import RECIPE_OPT_OUT, check_model_file, read_configs

    opt_out = opt_out or RECIPE_OPT_OUT
    log = log or (lambda line: None)
    register_custom_layers()  # models saved by an edgekit build may hold zoo layers
    # Safe mode or not: no model file makes a loader read another file (edgekit.models.file_checks).
    check_file(path, "model.file")
    if safe_mode:
        check_model_file(path, opt_out)
    if saved_model.is_saved_model(path) and not read_configs(path):
        # No Keras metadata: no Keras loader rebuilds a model from it; its signature is the model.
        return serving_signature(path, sample_shape, safe_mode, opt_out, log), "keras3"
    with importable(() if safe_mode else import_dirs):
        custom = {} if safe_mode else user_classes(path, import_dirs)
        model, flavour, errors = load_keras(path, safe_mode, custom)
        if model is None and saved_model.is_saved_model(path):
            return serving_signature(path, sample_shape, safe_mode, opt_out, log), "keras3"
        if model is None:
            raise ModelError(f"model.file: cannot load {path}: {load_failure(errors, safe_mode, import_dirs)}")
        if graph_inputs(model) is None and saved_model.is_saved_model(path):
            # a subclassed tf_keras model revived from its graph: no inputs to convert from
            return serving_signature(path, sample_shape, safe_mode, opt_out, log), "keras3"
        if saved_model.is_saved_model(path) and (revived := revived_layers(model)):
            # Revived layers run here but cannot be saved and loaded again (the build's model
            # file, the worker processes): the signature is the same graph, and reloads.
            shown = ", ".join(revived[:4]) + (f" and {len(revived) - 4} more" if len(revived) > 4 else "")
            why = f"a Keras SavedModel whose layers {shown} tf_keras can only revive from the graph (not reloadable)"
            return serving_signature(path, sample_shape, safe_mode, opt_out, log, why), "keras3"
        if graph_inputs(model) is None:
            model = traced(model, sample_shape, path)
            log(f"[model] {path.name}: subclassed {type(model.layers[-1]).__name__} traced to a functional graph "
                f"on inputs of shape {list(model.inputs[0].shape[1:])}")
    return model, flavour


def save_model(model, folder: Path) -> Path:
    """Save the fp32 model in its own Keras format and return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.keras"
    model.save(path)
    return path


_MODELS: dict[tuple, Any] = {}


def load_build_model(path: Path, keras: str, quantized: bool, import_dirs: tuple[str, ...], custom_layers=()):
    """The Keras model the build saved. No safe mode: the build wrote this file itself from a
    model it already loaded under the recipe's safe-mode setting."""
    import importlib

    for folder in import_dirs:
        if folder not in sys.path:
            sys.path.append(folder)
    stamp = (str(path), path.stat().st_mtime_ns, keras, quantized)
    if stamp not in _MODELS:
        if len(_MODELS) >= 2:
            _MODELS.pop(next(iter(_MODELS)))
        custom = {name: getattr(importlib.import_module(module), name) for module, name in custom_layers}
        if keras == "keras3":
            import keras as keras3

            model = keras3.saving.load_model(path, custom_objects=custom, compile=False, safe_mode=False)
        else:
            import tf_keras

            from edgekit.models import register_custom_layers

            register_custom_layers()
            if quantized:  # QAT layers deserialise only inside tfmot's scope
                import tensorflow_model_optimization as tfmot

                with tfmot.quantization.keras.quantize_scope():
                    model = tf_keras.models.load_model(path, custom_objects=custom, compile=False, safe_mode=False)
            else:
                model = tf_keras.models.load_model(path, custom_objects=custom, compile=False, safe_mode=False)
        _MODELS[stamp] = model
    return _MODELS[stamp]


#: where Keras' own layer classes live (a worker finds those by itself)
_KERAS_PACKAGES = {"keras", "tf_keras", "tensorflow", "tensorflow_model_optimization"}


def custom_layers(model) -> tuple[tuple[str, str], ...]:
    """(module, class) of every layer of ``model`` (itself included) defined outside Keras."""
    try:
        layers = list(model._flatten_layers(include_self=True, recursive=True))  # both Keras have it
    except (AttributeError, TypeError):
        layers = [model, *getattr(model, "layers", [])]
    classes = {type(layer) for layer in layers}
    return tuple(sorted((c.__module__, c.__name__) for c in classes
                        if c.__module__.split(".")[0] not in _KERAS_PACKAGES and "<" not in c.__qualname__))


def builder_import_dirs(recipe) -> tuple[str, ...]:
    """The folders a worker must import from to load the build's model: the recipe's, for a
    ``model.python`` builder's layers or a ``model.file`` loaded with safe mode off (a
    subclassed model's module) only (a stray onnx.py there must not shadow the real package in
    a worker)."""
    spec = getattr(recipe, "model", None)
    uses_code = getattr(spec, "python", None) or (getattr(spec, "file", None) and getattr(spec, "safe_mode", True) is False)
    return (str(Path(recipe.path).parent.resolve()),) if uses_code and getattr(recipe, "path", None) else ()


def keras_flavour(model) -> str:
    """Which Keras made ``model``: a worker must read its file with the same one."""
    tf_keras = sys.modules.get("tf_keras")  # not imported: the model cannot be a tf_keras one
    return "tf_keras" if tf_keras is not None and isinstance(model, tf_keras.Model) else "keras3"


def file_input_shape(path: Path) -> list | None:
    """The one input's sample shape from a .keras / .h5 config or a SavedModel's Keras metadata
    (None: unknown, several inputs, or a file that does not read: the model loader says why)."""
    import json

    from edgekit.models.safety import read_configs

    try:
        if path.is_dir():  # never read_configs: for a SavedModel it imports TensorFlow
            if (path / "config.json").is_file():
                configs = [json.loads((path / "config.json").read_bytes())]
            else:
                configs = [json.loads(_saved_model_root(path / "keras_metadata.pb"))]
        elif path.is_file():
            configs = [config.data for config in read_configs(path)]
        else:
            return None  # a missing file gets its own error when the model is loaded
    except (ModelError, OSError, ValueError, IndexError, RecursionError):
        return None
    for config in configs:
        shape = _config_input_shape(config)
        if shape is not None:
            return shape
    return None


def _saved_model_root(path: Path) -> bytes:
    """The root object's metadata (its Keras config, JSON) in a tf_keras SavedModel's
    keras_metadata.pb, read off the protobuf wire format (SavedMetadata.nodes: node_path is
    field 3, metadata field 5) since its generated module comes only with TensorFlow."""
    for number, node in _fields(path.read_bytes()):
        fields = dict(_fields(node)) if number == 1 else {}
        if fields.get(3) == b"root":
            return fields.get(5, b"")
    raise ValueError("no root node")


def _fields(buffer: bytes):
    """(field number, bytes or int) of one protobuf message's fields, in order."""
    at = 0
    while at < len(buffer):
        key, at = _varint(buffer, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(buffer, at)
        elif wire == 2:
            size, at = _varint(buffer, at)
            value, at = buffer[at:at + size], at + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, at = buffer[at:at + width], at + width
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield number, value


def _varint(buffer: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buffer[at]
        value, shift, at = value | (byte & 0x7F) << shift, shift + 7, at + 1
        if not byte & 0x80:
            return value, at


def _config_input_shape(data: Any) -> list | None:
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        return None
    config = data["config"]
    layers = config.get("layers") if isinstance(config.get("layers"), list) else []
    inputs = [layer for layer in layers if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"]
    shapes = []
    for layer in inputs or layers[:1]:  # a Sequential may keep the shape on its first layer
        cfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
        shape = shape.get("items") if isinstance(shape, dict) else shape  # a SavedModel's {"class_name": "__tuple__"}
        if isinstance(shape, list):
            shapes.append(shape[1:])
    build = data.get("build_config") if isinstance(data.get("build_config"), dict) else {}
    if not shapes and isinstance(build.get("input_shape"), list) and not isinstance(build["input_shape"][0], list):
        shapes.append(build["input_shape"][1:])
    return shapes[0] if len(shapes) == 1 else None
