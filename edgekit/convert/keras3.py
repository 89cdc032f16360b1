"""The trained tf_keras (Keras 2) model as a Keras 3 ``.keras`` file, for the gpu target on
machines with PyTorch or JAX and no TensorFlow (edgekit.runtimes.keras3 runs it there).

Keras 3 cannot load a tf_keras model as it is: a few layer configs carry Keras 2 arguments
Keras 3 refuses (``time_major`` of LSTM and GRU, ``groups`` of DepthwiseConv2D and
Conv2DTranspose, ...), and edgekit's zoo layers are tf_keras classes. So the model is rebuilt
in Keras 3 from its own config (each layer's arguments that its Keras 3 class does not take
dropped, and listed), the weights copied layer by layer, and the outputs of both compared on
real samples before the file is written: a layer that does not translate, or a model whose
outputs differ beyond the tolerance, is refused in one line. Lambda layers (Python bytecode),
TensorFlow-op layers and tensorflow-model-optimization wrappers never translate; the gpu
target only exports the base fp32 model, which has neither of the latter.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from edgekit.errors import ExportError, one_line

#: max |keras3 - tf_keras| allowed: ATOL + RTOL * max |tf_keras output|. Both run the same float32
#: graph on TensorFlow here; what remains is the order of float32 sums (about 1e-6 on the zoo).
ATOL, RTOL = 1e-4, 1e-4

#: keys of a layer config every Keras 3 layer takes (``keras.layers.Layer.__init__``)
BASE_KEYS = frozenset({"name", "trainable", "dtype", "autocast", "activity_regularizer", "input_dim", "input_shape"})
#: config keys that hold nested layer configs (wrappers, nested models)
NESTED = ("layer", "backward_layer", "cell", "cells", "forward_layer")
#: layers that hold Python code or TensorFlow ops, not Keras ones
NEVER = {"Lambda": "a Lambda layer (Python bytecode)", "TFOpLambda": "a TensorFlow-op layer",
         "SlicingOpLambda": "a TensorFlow slicing layer"}
#: tensorflow-model-optimization's wrappers (compressed models, which the gpu target never times)
TFMOT = ("PruneLowMagnitude", "QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer", "ClusterWeights",
         "QuantizeAnnotate")
#: tf_keras model classes -> (module, registered name) of Keras 3's own
MODELS = {"Functional": ("keras.src.models.functional", "Functional"), "Model": ("keras.src.models.functional", "Functional"),
          "Sequential": ("keras", None)}


def _single(value):
    """Keras 2 wrote some axes as a one-item list where Keras 3 takes the int."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


#: per class, Keras 2 argument values Keras 3 spells differently: key -> translation
VALUES = {"BatchNormalization": {"axis": _single}}


def export(model, path: Path, samples: np.ndarray) -> dict:
    """Write ``model`` (tf_keras) as a Keras 3 ``.keras`` file at ``path``.

    Args:
        model: the trained tf_keras model.
        path: where the .keras file goes.
        samples: float32 inputs (a few dozen test samples) on which both models must agree.

    Returns:
        What the export did: ``{"keras": version, "max_abs_diff": ..., "tolerance": ...,
        "dropped": {argument: how many layers had it}}``: Keras 2 arguments Keras 3 does not take.

    Raises:
        ExportError: a layer does not translate, a weight does not fit, or the outputs differ.
    """
    import keras

    from edgekit.models.saved_model import is_signature_model
    from edgekit.runtimes.keras3 import load

    dropped: dict[str, int] = {}
    if is_signature_model(model):
        raise ExportError("the model is a TensorFlow SavedModel's serving signature, which only TensorFlow runs "
                          "(a TFSMLayer): Keras 3 on JAX or PyTorch has no graph of Keras layers to run")
    if isinstance(model, keras.Model):  # a Keras 3 model.file: it is saved as it is
        rebuilt = model
    else:
        rebuilt = _rebuild(model, dropped)
    x = _inputs(model, samples)
    reference = _outputs(model, x)
    diff = _max_diff(rebuilt, x, reference)
    largest = max((float(np.max(np.abs(r))) for r in _fields(reference) if r.size), default=0.0)
    tolerance = ATOL + RTOL * largest
    if not diff <= tolerance:
        raise ExportError(f"the Keras {keras.__version__} rebuild of the model gives other outputs than the model "
                          f"(max abs diff {diff:.3g} > {tolerance:.3g})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.keras")  # Keras insists on the .keras suffix
    rebuilt.save(tmp)
    try:  # the file, read back, is what the gpu target runs: check it, not only the object
        reloaded = _max_diff(load(tmp), x, reference)
    except Exception as exc:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        raise ExportError(f"the Keras {keras.__version__} file does not load back: {one_line(exc)}") from None
    if not reloaded <= tolerance:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"the Keras {keras.__version__} file, loaded back, gives other outputs (max abs diff {reloaded:.3g})")
    tmp.replace(path)
    return {"keras": keras.__version__, "max_abs_diff": max(diff, reloaded), "tolerance": tolerance,
            "samples": len(x), "dropped": dropped}


# --------------------------------------------------------------------------- the config


def _rebuild(model, dropped: dict):
    """The tf_keras ``model`` rebuilt in Keras 3 from its config, with its weights."""
    import keras

    from edgekit.runtimes.keras3 import custom_objects

    try:
        spec = json.loads(model.to_json())
    except Exception as exc:  # noqa: BLE001 - a subclassed model has no config
        raise ExportError(f"the model has no config to rebuild in Keras 3 ({one_line(exc)})") from None
    if spec.get("class_name") not in MODELS:
        raise ExportError(f"a {spec.get('class_name')} model has no config Keras 3 can rebuild; use a Functional or "
                          "Sequential model")
    spec = _translate_layer(spec, dropped)
    try:
        rebuilt = keras.models.model_from_json(json.dumps(spec), custom_objects=custom_objects())
    except Exception as exc:  # noqa: BLE001 - any failure to rebuild is one line
        raise ExportError(f"Keras {keras.__version__} cannot rebuild the model from its config: {one_line(exc)}") from None
    _copy_weights(model, rebuilt)
    return rebuilt


def _translate_model(config: dict, dropped: dict) -> dict:
    config = dict(config)
    config["layers"] = [_translate_layer(layer, dropped) for layer in config.get("layers", [])]
    # Keras 2 lists even one input ([["input_1", 0, 0]]); Keras 3 would then expect a list of
    # inputs and warn on every call with one array.
    inputs = config.get("input_layers")
    if isinstance(inputs, list) and len(inputs) == 1 and _is_reference(inputs[0]):
        config["input_layers"] = inputs[0]
    return config


def _translate_layer(spec: dict, dropped: dict) -> dict:
    """One tf_keras layer spec as a Keras 3 one, or ExportError."""
    import keras

    from edgekit.runtimes.keras3 import custom_objects

    name = spec.get("config", {}).get("name") or spec.get("name") or "?"
    class_name, registered = spec.get("class_name", ""), spec.get("registered_name")
    if class_name in NEVER:
        raise ExportError(f"layer {name!r} is {NEVER[class_name]}, which has no Keras 3 counterpart")
    if class_name in TFMOT:
        raise ExportError(f"layer {name!r} is a tensorflow-model-optimization wrapper ({class_name}); only the base "
                          "fp32 model goes to Keras 3")
    spec = dict(spec)
    # Keras 2's build_config is {"input_shape": ...}, which some Keras 3 layers cannot build from
    # (MultiHeadAttention wants query and value shapes): the rebuild calls every layer on its
    # inputs, which builds it.
    spec.pop("build_config", None)
    config = dict(spec.get("config") or {})
    if class_name in MODELS:
        spec["config"] = _translate_model(config, dropped)
        spec["class_name"] = "Functional" if class_name == "Model" else class_name
        spec["module"], spec["registered_name"] = MODELS[class_name]
        return spec
    customs = custom_objects()
    cls = customs.get(registered) if registered else None
    if cls is None:
        cls = getattr(keras.layers, class_name, None)
        if registered and registered != class_name and cls is not None and registered not in customs:
            cls = None  # a custom class that only shares a Keras layer's name
    if cls is None or not isinstance(cls, type):
        raise ExportError(f"layer {name!r} of class {registered or class_name} has no Keras "
                          f"{keras.__version__} counterpart")
    accepted = _init_keys(cls)
    extra = sorted(k for k in config if k not in accepted)
    for key in extra:  # the outputs are compared below: a dropped argument that mattered shows there
        config.pop(key)
        dropped[key] = dropped.get(key, 0) + 1
    for key, translate in VALUES.get(class_name, {}).items():
        if key in config:
            config[key] = translate(config[key])
    for key in NESTED:
        value = config.get(key)
        if isinstance(value, dict) and "class_name" in value:
            config[key] = _translate_layer(value, dropped)
        elif isinstance(value, list):
            config[key] = [_translate_layer(v, dropped) if isinstance(v, dict) and "class_name" in v else v for v in value]
    spec["config"] = config
    if isinstance(spec.get("inbound_nodes"), list):
        spec["inbound_nodes"] = [_translate_node(node) for node in spec["inbound_nodes"]]
    if cls in customs.values():
        spec["module"], spec["registered_name"] = None, registered
    else:  # never let Keras 3 import a module a config names: the class was found here
        spec["module"], spec["registered_name"] = "keras.layers", None
    return spec


def _tensor(reference: list) -> dict:
    """A Keras 2 tensor reference ``[layer, node, tensor]`` as a Keras 3 one (shape and dtype are
    placeholders: the rebuild replaces it by that layer's real output)."""
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [], "dtype": "float32", "keras_history": [reference[0], int(reference[1]), int(reference[2])]}}


def _is_reference(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(v, int) for v in value[1:]))


def _translate_node(node):
    """A Keras 2 inbound node ``[[layer, node, tensor, kwargs], ...]`` in Keras 3's
    ``{"args", "kwargs"}`` form. Keras 3 reads the Keras 2 form too, but passes its call
    arguments as they are: MultiHeadAttention's ``value`` would stay a list of names."""
    if not isinstance(node, list) or not node or not all(isinstance(entry, list) for entry in node):
        return node
    tensors = [_tensor(entry[:3]) for entry in node]
    kwargs = dict(node[0][3]) if len(node[0]) > 3 and isinstance(node[0][3], dict) else {}
    kwargs = {key: _tensor(value) if _is_reference(value) else value for key, value in kwargs.items()}
    return {"args": [tensors[0] if len(tensors) == 1 else tensors], "kwargs": kwargs}


def _init_keys(cls) -> set[str]:
    """Every keyword the Keras 3 class's constructor chain takes (up to keras.layers.Layer)."""
    import keras

    keys = set(BASE_KEYS)
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, keras.layers.Layer)):
            continue
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) and param.name != "self":
                keys.add(param.name)
        if klass is keras.layers.Layer:
            break
    if issubclass(cls, keras.layers.InputLayer):
        keys.add("batch_input_shape")  # Keras 3 reads the Keras 2 name from its kwargs
    return keys


# --------------------------------------------------------------------------- the weights


def _copy_weights(source, target) -> None:
    """tf_keras weights into the rebuilt model, layer by layer (nested models too), by name."""
    for layer in source.layers:
        try:
            twin = target.get_layer(layer.name)
        except ValueError:
            raise ExportError(f"layer {layer.name!r} is missing from the Keras 3 rebuild") from None
        if hasattr(layer, "layers") and hasattr(twin, "layers"):
            _copy_weights(layer, twin)
            continue
        weights = layer.get_weights()
        own = twin.get_weights()
        if len(weights) != len(own):
            raise ExportError(f"layer {layer.name!r}: tf_keras has {len(weights)} weight(s), its Keras 3 rebuild {len(own)}")
        for w, o in zip(weights, own):
            if tuple(w.shape) != tuple(o.shape):
                raise ExportError(f"layer {layer.name!r}: weight of shape {tuple(w.shape)} does not fit the Keras 3 "
                                  f"weight of shape {tuple(o.shape)}")
        twin.set_weights(weights)


def _inputs(model, samples: np.ndarray) -> np.ndarray:
    from edgekit.runtimes import as_samples, cast_input, field_names

    samples = as_samples(samples)
    if field_names(samples) is not None:  # several inputs: each cast to its own dtype by the call
        return samples
    dtype = getattr(model.inputs[0], "dtype", None)
    dtype = getattr(dtype, "as_numpy_dtype", dtype) or np.float32
    return cast_input(samples, dtype)


def _outputs(model, x: np.ndarray) -> np.ndarray:
    """The model's float32 outputs on ``x`` (a structured batch for several inputs or outputs)."""
    from edgekit.train.fit import predict

    return predict(model, x)


def _fields(outputs: np.ndarray) -> list[np.ndarray]:
    return [outputs[n] for n in outputs.dtype.names] if outputs.dtype.names else [outputs]


def _max_diff(model, x: np.ndarray, reference: np.ndarray) -> float:
    out = _outputs(model, x)
    if out.shape != reference.shape or out.dtype != reference.dtype:
        raise ExportError(f"the Keras 3 model outputs {out.dtype} of shape {out.shape}, the model {reference.dtype} "
                          f"of shape {reference.shape}")
    return max((float(np.max(np.abs(a - b))) for a, b in zip(_fields(out), _fields(reference)) if a.size), default=0.0)


