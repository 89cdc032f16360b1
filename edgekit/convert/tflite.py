"""Keras -> TFLite (LiteRT) flatbuffer, at fp32, fp16, dynamic-range, full-integer int8 or 16x8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.convert import (
    batch1_signature,
    feeds,
    kept_float_record,
    model_inputs,
    node_layers,
    nodes_of,
    outer_names,
    sample_shapes,
    traced,
    variables_holder,
    write_atomic,
)
from edgekit.convert.preprocess import (
    has_normalization,
    tflite_int8_float_normalization,
)

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "int16x8")


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None,
            prequantized: bool = False, keep_float: tuple[str, ...] = ()) -> dict:
    """Convert a Keras model to a .tflite file.

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .tflite file is written.
        precision: "fp32"; "fp16" (fp16 weights); "dynamic" (int8 weights, float
            activations); "int8" (full-integer: int8 output, int8 input where the model's
            input is float; integer inputs such as token ids stay int32); "int16x8"
            (int16 activations, int8 weights, the model's input dtype and float output).
        calibration: representative samples (training split) for activation ranges; for a
            prequantized model only the input and output tensors take their ranges from it.
        options: ``edgekit.formats.TFLiteOptions`` fields: ``io`` (int8 or uint8) is the dtype of
            an int8 model's float inputs and outputs.
        prequantized: the model is quantization-aware; its fake-quant ranges are kept.
        keep_float: Keras layer names whose ops stay float in an int8 model (TFLite's
            selective quantization: their tensors are denylisted nodes of the
            ``QuantizationDebugger``); the input and output are float32 then. Not applied to
            a prequantized model (the selective quantizer refuses QAT graphs).

    Returns:
        The converter settings used.
    """
    import tensorflow as tf

    # int8-mixed (int8-fast) is int8 with some layers float: which ones, edgekit.convert.mixed
    # (edgekit.convert.fast) decides (and
    # hands them over as keep_float); called directly, this makes the int8 artifact of keep_float.
    precision = "int8" if precision in ("int8-mixed", "int8-fast") else precision
    if precision not in PRECISIONS:
        raise ValueError(f"tflite converter has no precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    shapes = sample_shapes(calibration)  # the data's shape fixes the model's free dimensions
    concrete = batch1_signature(model, shapes)
    inputs = model_inputs(model, shapes)
    dtype = tf.as_dtype(inputs[0].dtype)
    floating = any(np.issubdtype(i.dtype, np.floating) for i in inputs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables_holder(model))
    settings = {"converter": "tf.lite.TFLiteConverter", "tensorflow": tf.__version__}
    if precision != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision in ("int8", "int16x8"):
        samples = feeds(calibration, inputs)
        if len(inputs) == 1:
            converter.representative_dataset = lambda: (sample for sample in samples)
        else:  # keyed by the signature's input names: the interpreter's own input order is the converter's
            converter.representative_dataset = lambda: ({i.name: a for i, a in zip(inputs, sample)} for sample in samples)
        settings["calibration_samples"] = len(calibration)
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        settings["quantization"] = "fp16 weights"
    elif precision == "dynamic":
        settings["quantization"] = "dynamic range (int8 weights, float activations)"
    elif precision == "int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Only a float input is quantized: integer ids quantized to int8 (scale ~4 for a
        # vocabulary of 1,000) would merge neighbouring ids. An integer input keeps its dtype.
        # io uint8: the same int8 model behind a QUANTIZE op at each end (uint8 <-> int8).
        io = (options or {}).get("io") or "int8"
        if floating:
            converter.inference_input_type = tf.uint8 if io == "uint8" else tf.int8
        converter.inference_output_type = tf.uint8 if io == "uint8" else tf.int8
        if all(np.issubdtype(i.dtype, np.floating) for i in inputs):
            io_type = io
        elif len(inputs) == 1:
            io_type = f"{dtype.name} input, {io} output"
        else:  # each input: int8 (or uint8) where it is float, its own integer dtype where it is one
            io_type = f"{io} outputs; inputs " + ", ".join(
                f"{i.name} {io if np.issubdtype(i.dtype, np.floating) else i.dtype.name}" for i in inputs)
        settings.update(quantization="full-integer " + ("from QAT ranges" if prequantized else "PTQ"), io_type=io_type)
        keep = tuple(keep_float)
        if keep and prequantized:
            settings["keep_float"] = ("not applied: a QAT model carries its own int8 ranges and TFLite's selective "
                                      "quantizer refuses it")
        if (has_normalization(model) or keep) and not prequantized:
            # Raw features behind an embedded normalization share no int8 scale: it stays float;
            # so do the keep_float layers, through the same selective quantization (whose input
            # and output are float). Not for QAT models: the selective quantizer refuses them,
            # "Please check if the quantized model is in debug mode"; their int8 input quantizes
            # raw features.
            def make():
                fresh = tf.lite.TFLiteConverter.from_concrete_functions([concrete], variables_holder(model))
                fresh.optimizations = [tf.lite.Optimize.DEFAULT]
                fresh.representative_dataset = converter.representative_dataset
                return fresh

            outer = outer_names(model)
            also = (lambda names: nodes_of(names, keep, outer)) if keep else None
            write_atomic(Path(path), tflite_int8_float_normalization(make, converter.representative_dataset, also))
            if has_normalization(model):
                settings.update(quantization="full-integer PTQ, the embedded normalization in float",
                                io_type="float32 input and output (raw features), int8 inside")
            else:
                settings.update(quantization="full-integer PTQ, the keep_float layers in float",
                                io_type=("float32 input" if dtype.is_floating else f"{dtype.name} input")
                                + " and float32 output, int8 inside")
            if keep:
                settings.update(kept_float_record(keep, float_layers(path, keep, outer)))
            if io != "int8":
                settings["io"] = f"{io} not applied: this row's input and output stay float32 (see io_type)"
            return settings
    elif precision == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        settings["quantization"] = "int16 activations, int8 weights"
    write_atomic(Path(path), converter.convert())
    return settings


def float_layers(path: Path, layers, outer=()) -> list[str]:
    """The layers of ``layers`` that compute in float in the artifact at ``path`` (see ``layer_float``)."""
    floating = layer_float(path, layers, outer)
    return [layer for layer in layers if floating.get(layer)]


def layer_float(path: Path, layers, outer=()) -> dict[str, bool]:
    """Each layer of ``layers`` that has ops in the .tflite file: True where they all compute in
    float (every input and output of each op named after the layer is float32, QUANTIZE /
    DEQUANTIZE ops aside), False where one is integer. Layers without ops are left out."""
    from edgekit.runtimes.litert import interpreter_class

    interpreter_class_, _ = interpreter_class()
    interpreter = interpreter_class_(model_path=str(path), **_no_delegates())
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    layers = traced(layers, [d["name"] for d in details.values()])  # Keras 3 scopes: hidden_1 for hidden
    seen: dict[str, bool] = {}
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not len(op["outputs"]):
            continue
        owners = node_layers(details[op["outputs"][0]]["name"], layers, outer)  # a fused op: all its layers
        if not owners:
            continue
        tensors = [t for t in [*op["inputs"], *op["outputs"]] if t >= 0]
        floating = all(np.dtype(details[t]["dtype"]).kind == "f" for t in tensors)
        for layer in owners:
            seen[layer] = seen.get(layer, True) and floating
    return seen


def read_weights(path: Path) -> list[np.ndarray]:
    """The constant tensors of a .tflite file (zero points removed), read without delegates."""
    from edgekit.evaluate.weights import zero_point_shifted
    from edgekit.runtimes.litert import interpreter_class

    interpreter_class_, _ = interpreter_class()
    try:
        interpreter = interpreter_class_(model_path=str(path), **_no_delegates())
        interpreter.allocate_tensors()
    except RuntimeError as exc:
        if "custom op" not in str(exc):
            raise
        # a custom op that only the XNNPACK delegate runs (MediaPipe's Convolution2DTransposeBias):
        # the default resolver opens the file, and the constants are still the file's
        interpreter = interpreter_class_(model_path=str(path))
        interpreter.allocate_tensors()
    # Constants are op inputs that no op produces and that are not graph inputs (the private
    # ops list is the only way the interpreter API exposes the graph).
    ops = interpreter._get_ops_details()
    produced = {t for op in ops for t in op["outputs"]}
    inputs = {d["index"] for d in interpreter.get_input_details()}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    tensors = []
    for index in sorted({t for op in ops for t in op["inputs"] if t >= 0} - produced - inputs):
        values = interpreter.get_tensor(index)
        q = details[index]["quantization_parameters"]
        tensors.append(zero_point_shifted(values, q["zero_points"], q["quantized_dimension"]))
    return tensors


def _no_delegates() -> dict:
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        from tflite_runtime.interpreter import OpResolverType
    return {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}


#: how read_intermediates runs an artifact and what it compares (edgekit.evaluate.layer_error's "how")
INTERMEDIATES_HOW = ("the LiteRT interpreter without delegates",
                     "by hand: every tensor kept with experimental_preserve_all_tensors, as QuantizationDebugger reads them")


def read_intermediates(path: Path, samples: np.ndarray) -> list[dict]:
    """Every activation tensor of a .tflite file over ``samples``, dequantized, in execution order.

    Runs the LiteRT interpreter without delegates (XNNPACK would hide the tensors inside its
    partitions) and with ``experimental_preserve_all_tensors``, one sample at a time (the
    artifacts have a batch-1 signature). Each entry is ``{"name", "inputs", "value",
    "graph_input", "quantize", "op"}`` as ``edgekit.evaluate.layer_error`` reads it: the
    tensor's name (TFLite joins the names of the ops it fused with ";", each carrying its Keras layer path), the names
    of the activation tensors its op read, and its values (float32, one row per sample; int8
    tensors as ``(q - zero_point) * scale``), whether a QUANTIZE or DEQUANTIZE op wrote it, and the
    op's name. The first entry is the input as the model saw it (quantized and dequantized back
    where the input is int8).
    """
    from edgekit.runtimes.litert import interpreter_class

    interpreter_class_, _ = interpreter_class()
    interpreter = interpreter_class_(model_path=str(path), experimental_preserve_all_tensors=True, **_no_delegates())
    interpreter.allocate_tensors()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    source = interpreter.get_input_details()[0]
    active = {source["index"]}
    order = []  # (tensor index, indices of the activation tensors its op read)
    quantizing = set()  # tensors of QUANTIZE / DEQUANTIZE ops: a change of representation only
    op_of = {}  # tensor index -> the op that wrote it
    for op in interpreter._get_ops_details():
        read = [t for t in op["inputs"] if t in active]
        if not read:
            continue
        for t in op["outputs"]:
            if t >= 0 and t not in active:
                active.add(t)
                order.append((t, read))
                op_of[t] = op["op_name"]
                if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                    quantizing.add(t)
    names, seen = {}, set()
    for t in [source["index"], *(t for t, _ in order)]:
        name = details[t]["name"] or f"tensor_{t}"
        names[t] = name if name not in seen else f"{name}#{t}"
        seen.add(names[t])
    dtype, (scale, zero_point) = source["dtype"], source["quantization"]
    values: dict[int, list] = {t: [] for t in names}
    for sample in np.asarray(samples):
        feed = sample.reshape(source["shape"])
        if np.issubdtype(dtype, np.integer) and scale:
            info = np.iinfo(dtype)
            feed = np.clip(np.round(feed / scale + zero_point), info.min, info.max)
        interpreter.reset_all_variables()
        interpreter.set_tensor(source["index"], feed.astype(dtype))
        interpreter.invoke()
        for t, collected in values.items():
            collected.append(_dequantized(interpreter.get_tensor(t), details[t]))
    entries = [{"name": names[source["index"]], "inputs": [], "value": _batched(values[source["index"]]),
                "graph_input": True}]
    for t, read in order:
        if np.asarray(values[t][0]).dtype.kind == "f":
            entries.append({"name": names[t], "inputs": [names[i] for i in read], "value": _batched(values[t]),
                            "graph_input": False})
        else:  # an integer tensor that is not a quantized activation (indices, shapes): links only
            entries.append({"name": names[t], "inputs": [names[i] for i in read], "value": None, "graph_input": False})
        entries[-1].update(quantize=t in quantizing, op=op_of[t])
    return entries


def _batched(per_sample: list) -> np.ndarray:
    """One array of per-sample values: batch-1 tensors joined on their batch axis, others stacked."""
    if all(np.ndim(v) >= 1 and np.shape(v)[0] == 1 for v in per_sample):
        return np.concatenate(per_sample, axis=0)
    return np.stack(per_sample)


def _dequantized(values: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values in float: quantized ones as (q - zero_point) * scale (per channel too)."""
    values = np.asarray(values)
    q = detail.get("quantization_parameters") or {}
    scales = np.asarray(q.get("scales", []), np.float32)
    if values.dtype.kind not in "iu" or scales.size == 0:
        return values.astype(np.float32) if values.dtype.kind == "f" else values.copy()
    zero_points = np.asarray(q.get("zero_points", np.zeros_like(scales)), np.float32)
    if scales.size > 1:
        shape = [1] * values.ndim
        shape[q.get("quantized_dimension", 0)] = scales.size
        scales, zero_points = scales.reshape(shape), zero_points.reshape(shape)
    return ((values.astype(np.float32) - zero_points) * scales).astype(np.float32)
