"""The converters' own per-layer debuggers, to check ``edgekit.evaluate.layer_error`` against
(tests/evaluate/test_layer_match.py, benchmarks/layer_error_check.py); edgekit does not run them
in a build.

- TFLite's ``tf.lite.experimental.QuantizationDebugger``: each quantized op's output against the
  float op run on the same dequantized inputs (its NumericVerify diffs), comparable with a layer
  entry's ``local_snr_db``.
- onnxruntime's ``onnxruntime.quantization.qdq_loss_debug``: each activation of the float model
  ``quantize_static`` read against the QDQ model's after its DequantizeLinear (``xmodel_err``),
  comparable with a layer entry's ``snr_db``.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

import numpy as np


def one_op_entries(record: dict, entries: list[dict]) -> list[dict]:
    """The entries of a ``layer_errors`` record whose artifact tensor is the output of one op that
    reads only other compared tensors (or the input): the entries a per-op debugger measures as
    edgekit does (a group of several ops, TFLite's SeparableConv2D as a depthwise and a 1x1
    convolution, adds the error of each; the debugger's row is the last op's alone).
    ``entries``: the artifact's ``read_intermediates``."""
    by_name = {entry["name"]: entry for entry in entries}
    compared = {entry["tensor"] for entry in record.get("layers") or []}

    def carried(name: str) -> str:
        entry = by_name.get(name)
        while entry is not None and entry.get("quantize") and entry["inputs"] and entry["name"] not in compared:
            entry = by_name.get(entry["inputs"][0])
        return entry["name"] if entry is not None else name

    out = []
    for layer in record.get("layers") or []:
        tensor = by_name.get(layer["tensor"])
        if tensor is not None and all(by_name.get(name, {}).get("graph_input") or name in compared or carried(name) in compared
                                      for name in tensor["inputs"]):
            out.append(layer)
    return out


def tflite_debugger_snr(model, calibration: np.ndarray, samples: np.ndarray, artifact: Path) -> dict[str, float]:
    """QuantizationDebugger's error of each quantized op of a full-integer TFLite conversion with
    edgekit's settings (int8 input and output, ``calibration`` as the representative data), over
    ``samples``, as an SNR per tensor name (dB): the power of the op's output, read from
    ``artifact`` (edgekit's own int8 conversion of ``model`` with the same calibration), over the
    debugger's mean squared error. Its ``layer_direct_compare_metrics`` are not used: in
    TensorFlow 2.21 they hand over the tensors of other ops."""
    import tensorflow as tf

    from edgekit.convert import batch1_signature, variables_holder
    from edgekit.convert.tflite import read_intermediates

    converter = tf.lite.TFLiteConverter.from_concrete_functions([batch1_signature(model)], variables_holder(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=lambda: ([s[None]] for s in samples))
    debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    power = {entry["name"].split("#")[0]: float(np.mean(np.square(entry["value"], dtype=np.float64)))
             for entry in read_intermediates(Path(artifact), samples) if entry["value"] is not None}
    return {row["tensor_name"]: 10 * math.log10(power[row["tensor_name"]] / max(float(row["mean_squared_error"]), 1e-30))
            for row in csv.DictReader(dump) if power.get(row["tensor_name"])}


def onnx_debugger_snr(fp32: Path, int8: Path, samples: np.ndarray) -> dict[str, float]:
    """qdq_loss_debug's ``xmodel_err`` (dB) per activation name: ``fp32`` is the tf2onnx model the
    int8 one was quantized from (edgekit's fp32 ONNX artifact), put through ``quant_pre_process``
    as edgekit's converter does before ``quantize_static``."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(int8)).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="edgekit-qdq-debug-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

        def activations(path: Path):
            augmented = Path(tmp) / f"{Path(path).stem}.aug.onnx"
            modify_model_output_intermediate_tensors(str(path), str(augmented))
            return collect_activations(str(augmented), iter([{name: s[None]} for s in samples]))

        matched = create_activation_matching(activations(Path(int8)), activations(pre))
    errors = compute_activation_error({k: v for k, v in matched.items() if "float" in v})
    return {k: v["xmodel_err"] for k, v in errors.items()}
