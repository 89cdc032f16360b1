"""Safe mode for model files: refuse a file whose config would run code, before any loader sees it.

Keras' own safe mode does not cover every way a model file can run code: tf_keras loads a
Lambda layer's marshalled bytecode from a ``.h5`` file or a SavedModel even in safe mode, and
imports any Python module that a ``.keras`` config names. So, in safe mode, edgekit reads the
model config as plain JSON (``config.json`` of a ``.keras`` zip, the ``model_config`` attribute
of a ``.h5`` file, the Keras metadata of a SavedModel) and refuses the file when any object in
it would run code that the file carries or names:

* a Lambda layer (its body is Python bytecode or a function looked up by name), a Python
  lambda anywhere else (``__lambda__``), and the Keras 3 layers that wrap other frameworks' code;
* a reference to a Python module outside Keras, since loading imports it;
* in a ``.keras`` or ``.h5`` file, a layer class that is neither a Keras layer nor a registered
  one (edgekit's zoo layers); a SavedModel revives such a class from its TensorFlow graph;
* a TensorFlow-op layer whose op is outside the plain math namespaces (``tf.print``,
  ``tf.load_op_library``, ``tf.io``, ...).

Nothing here deserializes, imports or calls anything named in the file.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from edgekit.errors import ModelError, one_line

# Layers whose config carries code, with what to say about them.
_CODE_LAYERS = {
    "Lambda": "is a Lambda layer, which runs Python code stored in the file",
    "TorchModuleWrapper": "is a TorchModuleWrapper, which unpickles a PyTorch module stored in the file",
    "JaxLayer": "is a JaxLayer, which runs JAX functions named in the file",
    "FlaxLayer": "is a FlaxLayer, which runs a Flax module named in the file",
    "TFSMLayer": ("is a TFSMLayer, which loads and runs the SavedModel at a path named in the file (give that "
                  "SavedModel folder as model.file instead: edgekit checks its graph)"),
}
# Keras classes that are not exported in keras.layers but appear in saved functional models.
_INTERNAL_LAYERS = {
    "Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda", "TensorFlowOpLayer",
    "InstanceProperty", "InstanceMethod", "ClassMethod",
}
# Config keys whose value is a layer (or a list of layers), so its class must be a known layer.
_LAYER_KEYS = {"layers", "layer", "forward_layer", "backward_layer", "cell", "cells"}
# Modules the Keras loaders may resolve objects from without running foreign code.
_KERAS_PACKAGES = ("keras", "tf_keras")
# TF API namespaces a TFOpLambda may call into ("" is the top level, minus _TF_REFUSED).
_TF_NAMESPACES = {
    "", "math", "nn", "linalg", "signal", "image", "__operators__", "bitwise", "random", "strings",
    "sparse", "ragged", "dtypes",
}
_TF_REFUSED = {"print", "py_function", "numpy_function", "load_op_library", "load_library", "function"}
# SavedModel node kinds that are layers or models (metrics and the rest are not).
_SAVED_MODEL_LAYERS = {
    "_tf_keras_layer", "_tf_keras_input_layer", "_tf_keras_rnn_layer",
    "_tf_keras_network", "_tf_keras_model", "_tf_keras_sequential",
}


#: how a refusal names the opt-out, unless the caller words it (``edgekit init`` names its flag)
RECIPE_OPT_OUT = "set model.safe_mode: false in the recipe only if you trust this file"


def check_model_file(path: Path, opt_out: str = RECIPE_OPT_OUT) -> None:
    """Raise ModelError when loading the model file could run code it carries or names.

    Call it after registering edgekit's own layers (``models.register_custom_layers``), which
    are allowed. A file whose format is not recognised passes: no Keras loader builds a model
    from it. ``opt_out`` is the sentence that says how to opt out of safe mode.

    Raises:
        ModelError: one line naming the first offending layer and the opt-out, or saying why
            the config cannot be read.
    """
    configs = read_configs(path)
    try:
        found = next((p for c in configs for p in _problems(c.data, "", c.is_layer, c.strict)), None)
    except RecursionError:  # the walk follows the file's nesting
        raise ModelError(f"model.file: {path}: its model config is nested too deeply to check; "
                         "is it a model saved by Keras?") from None
    if found:
        layer, problem = found
        # A class from the user's own module (a subclassed model): say what opting out does.
        module = re.search(r'names the Python module "([^"]+)"', problem)
        then = (f" (edgekit then imports {module.group(1)} from the recipe's folder and traces a subclassed model "
                "to a functional graph)") if module else ""
        raise ModelError(f'model.file: {path}: layer "{layer or "?"}" {problem}; safe mode refuses it: {opt_out}{then}')


class Config(NamedTuple):
    """One model config found in a file."""

    data: Any  # the parsed JSON
    is_layer: bool  # whether its top object is a layer or model (not a metric, ...)
    # Whether an unknown class needs Python code to load. Not in a SavedModel: tf_keras revives
    # a class it does not know from the traced TensorFlow graph, running no Python from the file.
    strict: bool


def read_configs(path: Path) -> list[Config]:
    """The model config(s) stored in a model file, parsed as JSON and never deserialized.

    The format is told from the contents, as the loaders do (tf_keras loads any HDF5 file as
    ``.h5``, whatever its name).

    Returns:
        The configs; none for an unrecognised file.

    Raises:
        ModelError: a zip, HDF5 or SavedModel that cannot be read.
    """
    path = Path(path)
    try:
        raws = _saved_model_configs(path) if path.is_dir() else [(_file_config(path), True, True)]
    except Exception as exc:  # noqa: BLE001 - a broken zip, HDF5 or protobuf file: say so in one line
        reason = one_line(exc, 200, typed=False) or type(exc).__name__
        raise ModelError(f"model.file: cannot load {path}: {reason}; is it a complete .keras, .h5 or SavedModel saved by Keras?") from None
    return [Config(_json(raw, path), is_layer, strict) for raw, is_layer, strict in raws if raw is not None]


def _file_config(path: Path) -> bytes | str | None:
    """The raw model config of a .keras zip or an HDF5 file, None for any other file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return archive.read("config.json") if "config.json" in archive.namelist() else None
    import h5py

    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            return f.attrs.get("model_config")
    return None


def _saved_model_configs(folder: Path) -> list[tuple[bytes | str, bool, bool]]:
    """Keras metadata of a SavedModel: keras_metadata.pb, and what older ones keep in saved_model.pb."""
    configs = []
    if (folder / "config.json").is_file():  # an unzipped .keras folder
        configs.append(((folder / "config.json").read_bytes(), True, True))
    if (folder / "keras_metadata.pb").is_file():
        from tf_keras.protobuf import saved_metadata_pb2

        metadata = saved_metadata_pb2.SavedMetadata()
        metadata.ParseFromString((folder / "keras_metadata.pb").read_bytes())
        configs += [(node.metadata, node.identifier in _SAVED_MODEL_LAYERS, False) for node in metadata.nodes]
    if (folder / "saved_model.pb").is_file() or (folder / "saved_model.pbtxt").is_file():
        import tensorflow as tf

        # tf_keras falls back to metadata kept in the object graph when keras_metadata.pb is missing.
        for graph in tf.__internal__.saved_model.parse_saved_model(str(folder)).meta_graphs:
            for node in graph.object_graph_def.nodes:
                if node.WhichOneof("kind") == "user_object" and node.user_object.metadata:
                    configs.append((node.user_object.metadata, node.user_object.identifier in _SAVED_MODEL_LAYERS, False))
    return configs


def _json(raw: bytes | str, path: Path) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"model.file: {path}: its model config is not valid JSON ({one_line(exc, 100, typed=False)}); "
                         "is it a complete Keras model?") from None


def _problems(obj: Any, layer: str, is_layer: bool, strict: bool) -> Iterator[tuple[str, str]]:
    """Yield (layer name, what runs code) for each offending object in a config, outermost first."""
    if isinstance(obj, list):
        for item in obj:
            yield from _problems(item, layer, is_layer, strict)
        return
    if not isinstance(obj, dict):
        return
    class_name = obj.get("class_name")
    if isinstance(class_name, str):
        config = obj.get("config")
        name = obj.get("name") or (config.get("name") if isinstance(config, dict) else None)
        if (is_layer or class_name in _CODE_LAYERS) and isinstance(name, str):
            layer = name
        problem = _problem(obj, class_name, is_layer and strict)
        if problem:
            yield layer, problem
            return  # its insides are refused with it
    for key, value in obj.items():
        yield from _problems(value, layer, key in _LAYER_KEYS, strict)


def _problem(obj: dict, class_name: str, needs_class: bool) -> str | None:
    """What in one serialized object would run code, or None (``needs_class``: an unknown layer class would)."""
    if class_name in _CODE_LAYERS:
        return _CODE_LAYERS[class_name]
    if class_name == "__lambda__":
        return "holds a Python lambda, which runs code stored in the file"
    config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    if class_name in ("TFOpLambda", "SlicingOpLambda", "ClassMethod"):
        symbol = config.get("function") or config.get("cls_symbol")
        if not _plain_tf_symbol(symbol):
            return f'calls TensorFlow "{symbol}", which is not a plain math op'
    if _registered(obj, class_name):
        return None  # the loaders take a registered class before looking at its module
    module = obj.get("module")
    if isinstance(module, str) and not _keras_module(module) and not (module == "builtins" and class_name == "function"):
        return f'names the Python module "{module}", which loading would import'
    if needs_class and not _known_layer(class_name):
        return f'is of class "{class_name}", which is neither a Keras layer nor an edgekit one (custom code)'
    return None


def _keras_module(module: str) -> bool:
    return module.split(".", 1)[0] in _KERAS_PACKAGES


def _plain_tf_symbol(symbol: Any) -> bool:
    if not isinstance(symbol, str):
        return False
    namespace, _, name = symbol.rpartition(".")
    return namespace in _TF_NAMESPACES and name not in _TF_REFUSED


def _registered(obj: dict, class_name: str) -> bool:
    """Whether the object is one registered in this process (edgekit's zoo layers, Keras' own)."""
    import keras
    import tf_keras

    # The name the loaders look up: a function's config, else the registered name (the class
    # name in legacy .h5 configs, which have none). Registered names read "package>Name".
    if class_name == "function":
        name = obj.get("config")
    else:
        name = obj.get("registered_name") if "registered_name" in obj else class_name
    if not (isinstance(name, str) and ">" in name):
        return False
    return bool(tf_keras.saving.get_registered_object(name) or keras.saving.get_registered_object(name))


def _known_layer(class_name: str) -> bool:
    import keras
    import tf_keras

    if class_name in _INTERNAL_LAYERS:
        return True
    for layers, base in ((tf_keras.layers, tf_keras.layers.Layer), (keras.layers, keras.layers.Layer)):
        cls = getattr(layers, class_name, None)
        if isinstance(cls, type) and issubclass(cls, base):
            return True
    return False
