"""Keras -> ONNX (tf2onnx), at fp32 or static int8 (onnxruntime post-training quantization)."""

from __future__ import annotations

import contextlib
import gc
import io
import tempfile
from pathlib import Path

import numpy as np

from edgekit.convert import (
    call_structure,
    feeds,
    kept_float_record,
    model_inputs,
    model_outputs,
    named_outputs,
    node_layer,
    nodes_of,
    outer_names,
    sample_shapes,
    traced,
    write_atomic,
)
from edgekit.convert.preprocess import onnx_normalization_nodes as normalization_nodes
from edgekit.formats import ONNXOptions

PRECISIONS = ("fp32", "int8")
# Quantization settings recorded with every int8 artifact.
QUANT_KEYS = ("quant_format", "per_channel", "calibrate_method", "activation_type", "weight_type", "reduce_range")


class _Calibration:
    """CalibrationDataReader over samples (no batch axis), each input in its own dtype, fed one
    at a time as batch 1; ``names`` are the ONNX graph's input names, in the order of ``inputs``."""

    def __init__(self, names: list[str], samples: np.ndarray, inputs: list):
        self.feeds = iter(dict(zip(names, feed)) for feed in feeds(samples, inputs))

    def get_next(self):
        return next(self.feeds, None)


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None,
            prequantized: bool = False, keep_float: tuple[str, ...] = ()) -> dict:
    """Convert a Keras model to a .onnx file.

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .onnx file is written.
        precision: "fp32", or "int8" for onnxruntime static quantization (the model's input
            dtype and float output; weights and activations int8/uint8 inside).
        calibration: representative float32 samples (training split, no batch axis) for
            the int8 activation ranges.
        options: fields of ``edgekit.formats.ONNXOptions`` (opset, quant_format,
            per_channel, calibrate_method, activation_type, weight_type, reduce_range);
            missing ones take its measured defaults.
        prequantized: the model is quantization-aware: tf2onnx writes its fake-quant ranges
            as QDQ pairs, and no calibration is run.
        keep_float: Keras layer names whose nodes stay float at int8 (``quantize_static``'s
            ``nodes_to_exclude``: tf2onnx names each node after its layer's scope). Not
            applied to a prequantized model: its QDQ pairs come from the QAT graph itself.

    Returns:
        The converter settings used.

    Raises:
        ValueError: an unknown precision, option name or option value.
    """
    # int8-mixed (int8-fast) is int8 with some layers float: which ones, edgekit.convert.mixed
    # (edgekit.convert.fast) decides (and hands them over as keep_float); called directly, this
    # makes the int8 artifact of keep_float.
    precision = "int8" if precision in ("int8-mixed", "int8-fast") else precision
    if precision not in PRECISIONS:
        raise ValueError(f"onnx converter has no precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    opts = ONNXOptions.model_validate(options or {}).model_dump()
    import tensorflow as tf
    import tf2onnx

    # from_function, not from_keras: from_keras looks outputs up by the model's output names,
    # which fails on Keras 3 Sequential models (KeyError 'keras_tensor_N'). The dict names the
    # ONNX output "output"; the batch of 1 matches batch1_signature and how runtimes are timed.
    # The model's own input dtype: int32 token ids stay int32 (tensor(int32)), no CAST in front.
    # With several inputs or outputs, each keeps its Keras name (edgekit.convert.batch1_signature).
    # The data's sample shape fixes the model's free dimensions.
    inputs = model_inputs(model, sample_shapes(calibration))
    outputs = model_outputs(model)
    specs = [tf.TensorSpec([1, *i.shape[1:]], tf.as_dtype(i.dtype), name="input" if len(inputs) == 1 else i.name)
             for i in inputs]

    def forward(*xs):
        result = model(xs[0] if len(inputs) == 1 else call_structure(model, inputs, xs), training=False)
        named = named_outputs(model, outputs, result)
        return named if isinstance(named, dict) else {"output": named}

    function = _captures_frozen(tf.function(forward), specs)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opts["opset"])
    # tf2onnx leaves its graphs in reference cycles: 0.7 GiB at MobileNetV2 224, held through
    # the quantization below unless collected now (the real-size build's memory peak)
    gc.collect()
    settings = {"converter": "tf2onnx", "tf2onnx": tf2onnx.__version__, "opset": opts["opset"]}
    keep = tuple(keep_float)
    if precision == "fp32" or prequantized:
        if prequantized:
            settings["quantization"] = "QDQ from QAT ranges"
            if keep:
                settings["keep_float"] = "not applied: a QAT model's QDQ pairs come from its own fake-quant ranges"
        write_atomic(Path(path), proto.SerializeToString())
        return settings

    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with tempfile.TemporaryDirectory(prefix="edgekit-onnx-") as tmp:
        fp32, pre, int8 = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        fp32.write_bytes(proto.SerializeToString())
        # onnxruntime's recommended shape inference + graph cleanup before quantizing (and
        # without it quantize_static warns); the symbolic shape pass would need sympy.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        # Histogram calibrators print progress to stdout, which belongs to the CLI.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(pre),
                str(int8),
                _Calibration([spec.name for spec in specs], calibration, inputs),
                quant_format=getattr(QuantFormat, opts["quant_format"]),
                per_channel=opts["per_channel"],
                reduce_range=opts["reduce_range"],
                activation_type=types[opts["activation_type"]],
                weight_type=types[opts["weight_type"]],
                calibrate_method=getattr(CalibrationMethod, opts["calibrate_method"]),
                # an embedded normalization stays float: quantizing raw features with one
                # per-tensor scale would merge the values of small-range features
                nodes_to_exclude=normalization_nodes(pre) + (_layer_nodes(pre, keep, outer_names(model)) if keep else []),
            )
        write_atomic(Path(path), int8.read_bytes())
    settings.update(
        {key: opts[key] for key in QUANT_KEYS},
        calibration_samples=len(calibration),
        onnxruntime=onnxruntime.__version__,
    )
    if keep:
        settings.update(kept_float_record(keep, float_layers(path, keep, outer_names(model))))
    return settings


def _captures_frozen(function, specs):
    """``function`` as tf2onnx can convert it when its graph captures plain tensors: tf2onnx
    makes every non-resource input of the concrete function a graph input, captured constants
    too (basic-pitch's SavedModel captures its CQT kernels: the ONNX model then asked for 3 more
    inputs). Frozen first (captures become constants), its outputs named again (the frozen
    function returns a flat list, in the sorted key order of the dict ``forward`` returns)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = function.get_concrete_function(*specs)
    if all(t.dtype == tf.resource for t in concrete.captured_inputs):
        return function
    frozen, names = convert_variables_to_constants_v2(concrete), sorted(concrete.structured_outputs)
    return tf.function(lambda *xs: dict(zip(names, frozen(*xs))))


def _layer_nodes(path, layers, outer) -> list[str]:
    """The nodes of an ONNX file made by the Keras ``layers``."""
    import onnx

    return nodes_of([node.name for node in onnx.load(str(path)).graph.node], layers, outer)


#: nodes whose second input is their weight
_WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: the nodes quantization adds around the float ones
_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def float_layers(path: Path, layers, outer=()) -> list[str]:
    """The layers of ``layers`` that compute in float in the artifact at ``path`` (see ``layer_float``)."""
    floating = layer_float(path, layers, outer)
    return [layer for layer in layers if floating.get(layer)]


def layer_float(path: Path, layers, outer=()) -> dict[str, bool]:
    """Each layer of ``layers`` that has nodes in the .onnx file: True where they all compute in
    float, False where one runs in int8. Layers without nodes are left out.

    onnxruntime runs a node in int8 where QDQ surrounds it (DQ -> op -> Q fuses into an integer
    kernel): a node is int8 when a weight reaches it through a DequantizeLinear, or when every
    input comes out of a DequantizeLinear and every output goes into a QuantizeLinear (or it is
    a QLinear / Integer operator). A float node may still read a dequantized activation: the
    int8 output of the layer before it."""
    import onnx

    graph = onnx.load(str(path)).graph
    constants = {init.name for init in graph.initializer}
    dequantized, dequantized_weights, quantized_inputs = set(), set(), set()
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            dequantized.update(node.output)
            if node.input[0] in constants:
                dequantized_weights.update(node.output)
        elif node.op_type == "QuantizeLinear":
            quantized_inputs.add(node.input[0])

    def integer(node) -> bool:
        if node.op_type.startswith("QLinear") or node.op_type.endswith("Integer"):
            return True
        if node.op_type in _WEIGHTED:
            # the weight decides (a float conv may still read a bias dequantized for another
            # conv that shares it: tf2onnx shares equal bias constants)
            return len(node.input) > 1 and node.input[1] in dequantized_weights
        feeds = [name for name in node.input if name and name not in constants]
        return (bool(feeds) and all(name in dequantized for name in feeds)
                and all(name in quantized_inputs for name in node.output))

    seen: dict[str, bool] = {}
    layers = traced(layers, [node.name for node in graph.node])  # Keras 3 scopes: hidden_1 for hidden
    for node in graph.node:
        if node.op_type in _QDQ:
            continue
        layer = node_layer(node.name, layers, outer)
        if layer is None:
            continue
        seen[layer] = seen.get(layer, True) and not integer(node)
    return seen


def read_weights(path: Path) -> list[np.ndarray]:
    """The initializers of an .onnx file; quantized ones minus their DequantizeLinear zero point."""
    import onnx
    from onnx import numpy_helper

    from edgekit.evaluate.weights import zero_point_shifted

    graph = onnx.load(str(path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    zero_points = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in values:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zp = values.get(node.input[2]) if len(node.input) > 2 else None
            zero_points[node.input[0]] = (zp, axis)
    return [
        zero_point_shifted(array, *zero_points[name]) if name in zero_points else array
        for name, array in values.items()
        if array.dtype.kind in "fiu" and array.dtype != np.int64  # int64 initializers are shapes
    ]


def why_no_weights(path: Path) -> str | None:
    """Why ``read_weights`` found no weight matrix: the graph keeps them inside control-flow
    subgraphs (If, Loop, Scan), which it does not descend into; None where that is not so."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    nested = sorted({node.op_type for node in graph.node
                     if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)})
    return f"weights inside {'/'.join(nested)} subgraphs" if nested else None


#: how read_intermediates runs an artifact and what it compares (edgekit.evaluate.layer_error's "how")
INTERMEDIATES_HOW = ("onnxruntime (CPU, graph optimizations off)",
                     "by hand, as onnxruntime.quantization.qdq_loss_debug does: every activation a graph output, "
                     "each layer read after its DequantizeLinear")


def read_intermediates(path: Path, samples: np.ndarray) -> list[dict]:
    """Every activation tensor of an .onnx file over ``samples``, in graph order (the layer
    error's reader: ``edgekit.evaluate.layer_error``).

    Each activation tensor (one that depends on the graph input) becomes a graph output of an
    in-memory copy, run in onnxruntime (CPU, graph optimizations off so that no fused node hides
    a tensor: a QDQ graph then computes exactly its quantize-dequantize arithmetic), one sample at
    a time (batch-1 signature). Entries are ``{"name", "inputs", "value", "graph_input",
    "quantize", "tensor", "op"}``: the name is ``<node name>;<tensor name>`` (tf2onnx names nodes
    by Keras layer path, e.g. ``lenet/conv2d/Conv2D``), ``value`` float32 with one row per sample
    (None for integer tensors: a QuantizeLinear's uint8 output is read after its
    DequantizeLinear), whether a QuantizeLinear / DequantizeLinear wrote it, the tensor's own name
    and the node's op type.
    """
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}
    source = next(i for i in graph.input if i.name not in initializers)
    active = {source.name}
    order = []  # (entry name, tensor name, names of the activation tensors the node read, op type)
    quantizing = set()  # entries of QuantizeLinear / DequantizeLinear nodes
    tensor_entry = {source.name: source.name}
    for node in graph.node:
        read = [t for t in node.input if t in active]
        if not read:
            continue
        for out in node.output:
            if out and out not in active:
                active.add(out)
                name = f"{node.name};{out}" if node.name else out
                tensor_entry[out] = name
                order.append((name, out, read, node.op_type))
                if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                    quantizing.add(name)
    declared = {o.name for o in graph.output}
    for _, out, _, _ in order:
        if out not in declared:
            graph.output.append(onnx.ValueInfoProto(name=out))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fetch = [out for _, out, _, _ in order]
    kind = session.get_inputs()[0].type
    dtype = np.int64 if "int64" in kind else np.int32 if "int32" in kind else np.float32
    shape = [1, *np.shape(samples)[1:]]
    runs = [session.run(fetch, {source.name: np.asarray(sample, dtype).reshape(shape)}) for sample in np.asarray(samples)]
    entries = [{"name": source.name, "inputs": [], "value": np.asarray(samples, np.float32).reshape(len(samples), *shape[1:]),
                "graph_input": True, "tensor": source.name, "op": "Input"}]
    for k, (name, out, read, op_type) in enumerate(order):
        per_sample = [np.asarray(run[k]) for run in runs]
        value = None
        if per_sample and per_sample[0].dtype.kind == "f":
            value = (np.concatenate(per_sample, axis=0) if all(v.ndim >= 1 and v.shape[0] == 1 for v in per_sample)
                     else np.stack(per_sample)).astype(np.float32)
        entries.append({"name": name, "inputs": [tensor_entry[t] for t in read], "value": value, "graph_input": False,
                        "quantize": name in quantizing, "tensor": out, "op": op_type})
    return entries
