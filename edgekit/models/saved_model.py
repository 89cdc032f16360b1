"""A TensorFlow SavedModel without a Keras model in it, as a Keras 3 model of its serving signature.

Folders written by ``tf.saved_model.save`` (of a ``tf.Module``, or of a Keras model) and by
Keras 3's ``model.export()`` hold TensorFlow graphs and no Keras config: no Keras loader
rebuilds a model from them (tf_keras revives a bare ``_UserObject``, or refuses a Keras model
saved that way). What they do hold is a serving signature: named, typed input tensors in,
named output tensors out. ``as_keras_model`` puts that signature behind ``keras.Input``s of its
shapes and dtypes, as one layer (``ServingSignature``, Keras' ``TFSMLayer`` fed by input name),
so the rest of edgekit sees a Keras 3 model: every converter's post-training path applies
(TFLite converter, tf2onnx, OpenVINO through a SavedModel), and the Keras baseline row is the
SavedModel itself, run by TensorFlow. Compression (pruning, clustering, QAT) needs the Keras
layers, which a signature does not have.

Safe mode: loading a SavedModel runs no Python from the folder, only TensorFlow ops. Some ops
reach outside the model (read or write files, call back into Python, write summaries); in safe
mode ``check_graph`` refuses a serving signature whose graph, or any function it calls, holds
one (``OUTSIDE_OPS``), before TensorFlow loads anything.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras

from edgekit.errors import ModelError
from edgekit.models.safety import RECIPE_OPT_OUT

#: the signature TensorFlow serving (and ``tf.saved_model.save``'s default) calls
SERVING = "serving_default"

#: TensorFlow ops that reach outside the model: Python callbacks, files, checkpoints, summaries,
#: debug dumps, memory-mapped files. A serving graph computes from its inputs and variables only.
OUTSIDE_OPS = frozenset({
    "PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    "LoadAndRemapMatrix", "CreateSummaryFileWriter", "CreateSummaryDbWriter", "ImportEvent",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2", "ExperimentalSqlDataset", "SqlDataset",
})
#: op name patterns of the same kinds: file readers, dataset sources, summary writers
_OUTSIDE_PATTERN = re.compile(r"(Reader(V\d)?|Dataset(V\d)?|Summary(V\d)?|Writer)$|^Write")


def is_saved_model(path: Path) -> bool:
    """Whether ``path`` is a SavedModel folder."""
    path = Path(path)
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


@keras.saving.register_keras_serializable(package="edgekit")
class ServingSignature(keras.layers.TFSMLayer):
    """One signature of a SavedModel as a Keras 3 layer, fed one tensor per signature input.

    Keras' ``TFSMLayer`` passes its input positionally, which a signature with several inputs
    refuses (signatures take keyword arguments only): this one names them, from a tensor (one
    input), a list in ``input_names`` order or a dict. Outputs are the signature's dict.
    """

    def __init__(self, filepath, call_endpoint=SERVING, input_names=None, **kwargs):
        super().__init__(filepath, call_endpoint=call_endpoint, **kwargs)
        if call_endpoint in self._reloaded_obj.signatures:  # the signature, not an attribute of that name
            self.call_endpoint_fn = self._reloaded_obj.signatures[call_endpoint]
        self.input_names = list(input_names or input_specs(self.call_endpoint_fn))

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            feeds = dict(zip(self.input_names, inputs))
        else:
            feeds = {self.input_names[0]: inputs}
        return self.call_endpoint_fn(**feeds)

    def get_config(self):
        return {**super().get_config(), "input_names": list(self.input_names)}

    @classmethod
    def from_config(cls, config, custom_objects=None, safe_mode=None):
        """Keras' safe mode refuses every ``TFSMLayer``; edgekit's reads the graph instead
        (``check_graph``): this layer is edgekit's own, made from a folder edgekit checked."""
        if safe_mode is None:
            try:  # Keras' private scope flag (load_model(safe_mode=...) sets it); if it moves: safe
                from keras.src.saving.serialization_lib import in_safe_mode

                safe_mode = in_safe_mode()
            except ImportError:
                safe_mode = True
        if safe_mode is not False:
            check_graph(Path(config["filepath"]), config.get("call_endpoint") or SERVING)
        return cls(**config)


def is_signature_model(model) -> bool:
    """Whether ``model`` is a SavedModel's serving signature (``as_keras_model``)."""
    return any(isinstance(layer, ServingSignature) for layer in getattr(model, "layers", []))


def input_specs(function) -> dict:
    """A signature function's inputs: name -> ``tf.TensorSpec``, sorted by name. A signature
    keeps its inputs in a protobuf map, whose order differs from one process to the next (seen
    here: ``image, extra`` in one run, ``extra, image`` in the next); names are what stays."""
    args, kwargs = function.structured_input_signature
    specs = dict(sorted(kwargs.items()))
    for index, spec in enumerate(args):  # a tf.function endpoint may take positional inputs
        specs.setdefault(getattr(spec, "name", None) or f"input_{index}", spec)
    return specs


def as_keras_model(path: Path, sample_shape=None, safe_mode: bool = True, opt_out: str = RECIPE_OPT_OUT):
    """The serving signature of the SavedModel at ``path`` as a Keras 3 functional model.

    Args:
        path: the SavedModel folder.
        sample_shape: the data's sample shape (no batch axis): fixes the free dimensions of a
            single input (``[None, None, None, 3]`` and 32x32 images: ``[None, 32, 32, 3]``).
        safe_mode: refuse a graph with ops that reach outside the model (``check_graph``).
        opt_out: how the refusal names the opt-out (a recipe key, a command-line flag).

    Returns:
        The model: one ``keras.Input`` per signature input (its name, shape and dtype), one
        output, or a dict of outputs named as the signature names them.

    Raises:
        ModelError: no usable signature, an input edgekit cannot feed, or refused by safe mode.
    """
    path = Path(path).resolve()
    endpoint = choose_endpoint(path)
    if safe_mode:
        check_graph(path, endpoint, opt_out)
    try:
        layer = ServingSignature(str(path), call_endpoint=endpoint, name="saved_model")
    except Exception as exc:  # noqa: BLE001 - TensorFlow's loader: a broken or foreign folder, in one line
        raise ModelError(f"model.file: cannot load {path} as a TensorFlow SavedModel ({_reason(exc)}); "
                         "save it with tf.saved_model.save or Keras' model.export()") from None
    specs = input_specs(layer.call_endpoint_fn)
    if not specs:
        raise ModelError(f"model.file: {path}: its {endpoint} signature takes no input; edgekit feeds data to a "
                         "model: export a signature with the model's input (tf.saved_model.save(obj, path, signatures=...))")
    inputs = [_input(name, spec, path, endpoint, sample_shape if len(specs) == 1 else None)
              for name, spec in specs.items()]
    try:
        outputs = layer(inputs[0] if len(inputs) == 1 else inputs)
    except Exception as exc:  # noqa: BLE001 - the signature refuses the inputs it declared (a free rank, ...)
        raise ModelError(f"model.file: {path}: its {endpoint} signature cannot be called on inputs of its own shapes "
                         f"({_reason(exc)}); export a signature with fixed input ranks") from None
    if isinstance(outputs, dict) and len(outputs) == 1:
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, dict):
        outputs = {_keras_name(name): outputs[name] for name in sorted(outputs)}  # by name, as the inputs
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=_keras_name(path.name or "saved_model"))


def choose_endpoint(path: Path) -> str:
    """The signature to serve: ``serving_default``, else the only one; read from the folder's
    protobuf, before TensorFlow loads (and restores) anything.

    Raises:
        ModelError: the folder has no signature, or several and none of them the default.
    """
    names = sorted(_meta_graph(path).signature_def)
    if SERVING in names:
        return SERVING
    if len(names) == 1:
        return names[0]
    if not names:
        raise ModelError(f"model.file: {path}: the SavedModel has no signature to call; save it with one: "
                         "tf.saved_model.save(obj, path, signatures=obj.__call__.get_concrete_function(...)) "
                         "or Keras' model.export(path)")
    raise ModelError(f"model.file: {path}: the SavedModel has signatures {', '.join(names)} and none is "
                     f"{SERVING}; save the one to measure as {SERVING} (tf.saved_model.save(..., signatures=...))")


def check_graph(path: Path, endpoint: str = SERVING, opt_out: str = RECIPE_OPT_OUT) -> None:
    """Refuse (ModelError) a serving signature whose graph holds an op that reaches outside the
    model (``OUTSIDE_OPS``): the graph nodes its outputs depend on, and every function they call,
    nested ones included. Reads the protobuf only; nothing is loaded or run."""
    meta = _meta_graph(path, endpoint)
    signature = meta.signature_def.get(endpoint)
    if signature is None:
        return  # no such signature: the loader says so in its own words
    nodes = {node.name: node for node in meta.graph_def.node}
    library = {function.signature.name: function for function in meta.graph_def.library.function}
    pending = [_node_name(tensor.name) for tensor in signature.outputs.values()]
    seen_nodes, seen_functions = set(), set()
    while pending:
        name = pending.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        _refuse_outside(node, path, endpoint, opt_out)
        pending += [_node_name(source) for source in node.input]
        functions = _called(node)
        while functions:
            function_name = functions.pop()
            if function_name in seen_functions or function_name not in library:
                continue
            seen_functions.add(function_name)
            for inner in library[function_name].node_def:
                _refuse_outside(inner, path, endpoint, opt_out, where=function_name)
                functions += _called(inner)


def _refuse_outside(node, path: Path, endpoint: str, opt_out: str, where: str | None = None) -> None:
    op = node.op
    outside = op in OUTSIDE_OPS or bool(_OUTSIDE_PATTERN.search(op))
    if op == "PrintV2":  # printing to stderr is harmless; to a file it writes one
        outside = node.attr["output_stream"].s.decode(errors="replace").startswith("file")
    if outside:
        inside = f" in function {where}" if where else ""
        raise ModelError(f'model.file: {path}: its {endpoint} signature runs the TensorFlow op {op} (node '
                         f'"{node.name}"{inside}), which reaches outside the model (files, Python, summaries); '
                         f"safe mode refuses it: {opt_out}")


def _called(node) -> list[str]:
    """The functions a node calls (PartitionedCall's f, If's branches, While's body, ...)."""
    names = []
    for value in node.attr.values():
        if value.HasField("func"):
            names.append(value.func.name)
        names += [function.name for function in value.list.func]
    return names


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _meta_graph(path: Path, endpoint: str | None = None):
    """The folder's meta graph that serves (the one holding ``endpoint``, else the first)."""
    import tensorflow as tf

    try:
        graphs = list(tf.__internal__.saved_model.parse_saved_model(str(path)).meta_graphs)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign saved_model.pb, in one line
        raise ModelError(f"model.file: cannot read {path} as a TensorFlow SavedModel ({_reason(exc)}); "
                         "is it a complete SavedModel folder?") from None
    if not graphs:
        raise ModelError(f"model.file: {path}: the SavedModel holds no graph; is it a complete SavedModel folder?")
    return next((graph for graph in graphs if endpoint is not None and endpoint in graph.signature_def), graphs[0])


def _input(name: str, spec, path: Path, endpoint: str, sample_shape):
    """A ``keras.Input`` for one signature input, or ModelError for one edgekit cannot feed."""
    dtype = spec.dtype
    if not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
        raise ModelError(f'model.file: {path}: input "{name}" of its {endpoint} signature is {dtype.name}; edgekit '
                         "feeds numeric arrays: export a signature that takes the numeric tensor (after any "
                         "string parsing or decoding)")
    dims = spec.shape.as_list() if spec.shape.rank is not None else None
    if not dims:
        shown = "of unknown rank" if dims is None else "a scalar (no batch axis)"
        raise ModelError(f'model.file: {path}: input "{name}" of its {endpoint} signature is {shown}; edgekit '
                         "feeds batches: export the signature with a batch axis first (tf.TensorSpec([None, ...]))")
    if dims[0] is not None:
        raise ModelError(f'model.file: {path}: input "{name}" of its {endpoint} signature takes batches of exactly '
                         f"{dims[0]} (shape {dims}); edgekit runs batches of any size: export it with a free batch "
                         f"axis (tf.TensorSpec([None, {', '.join(str(d) for d in dims[1:])}]))")
    sample = list(dims[1:])
    if sample_shape is not None and len(sample_shape) == len(sample):
        sample = [s if d is None else d for d, s in zip(sample, sample_shape)]
    return keras.Input(shape=tuple(sample), dtype=dtype.name, name=_keras_name(name))


def _keras_name(name: str) -> str:
    """A name Keras and the converters' scopes accept (letters, digits, ``_.-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", str(name)).strip("._-")
    return cleaned or "saved_model"


def _reason(exc: BaseException) -> str:
    from edgekit.errors import one_line

    return one_line(exc, 200)
