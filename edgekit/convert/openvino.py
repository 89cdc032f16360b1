"""Keras -> OpenVINO IR (.xml + .bin), at fp32, bf16 (the fp32 IR, run at the CPU plugin's
bf16) or int8 (NNCF post-training quantization)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekit.convert import (
    batch1_signature,
    feeds,
    kept_float_record,
    model_inputs,
    node_layer,
    nodes_of,
    outer_names,
    sample_shapes,
    traced,
)
from edgekit.formats import OpenVINOOptions
from edgekit.runtimes import package_version
from edgekit.runtimes.openvino import disable_telemetry

#: where an IR says at which precision its runtime compiles it (OpenVINO's own rt_info section,
#: which edgekit.runtimes.openvino reads)
RUNTIME_PRECISION = ("runtime_options", "INFERENCE_PRECISION_HINT")


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None,
            prequantized: bool = False, keep_float: tuple[str, ...] = ()) -> dict:
    """Convert a Keras model to an OpenVINO IR pair, ``path`` (.xml) and its .bin.

    The model goes through a SavedModel of its batch-1 signature: the only route that
    converted every model tried, Keras 3 recurrent layers included (given the Keras object
    or the concrete function, convert_model fails on their TensorList ops, and the ONNX
    frontend on the Loop that tf2onnx makes of them).

    Args:
        model: a tf_keras or Keras 3 model.
        path: where the .xml is written; the weights go next to it with suffix .bin.
        precision: "fp32"; "bf16": the same fp32 IR, marked (rt_info ``runtime_options``
            INFERENCE_PRECISION_HINT=bf16) so that its session compiles it at the CPU
            plugin's bf16; or "int8" for NNCF post-training
            quantization (the model's input dtype, float32 output, int8 weights and
            activations inside).
        calibration: representative float32 samples (training split), used for int8.
        options: fields of ``edgekit.formats.OpenVINOOptions`` (preset,
            fast_bias_correction); both only affect int8.
        prequantized: the model is quantization-aware: its FakeQuant ops become OpenVINO
            FakeQuantize as they are, and NNCF is not run.
        keep_float: Keras layer names whose ops stay float at int8 (NNCF's ``ignored_scope``:
            the IR's friendly names are the SavedModel's scopes, ``mlp/dense/MatMul``). Not
            applied to a prequantized model (NNCF does not run on it).

    Returns:
        The converter settings used.

    Raises:
        ValueError: for an unknown precision or option.
    """
    # int8-mixed (int8-fast) is int8 with some layers float: which ones, edgekit.convert.mixed
    # (edgekit.convert.fast) decides (and
    # hands them over as keep_float); called directly, this makes the int8 artifact of keep_float.
    precision = "int8" if precision in ("int8-mixed", "int8-fast") else precision
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"openvino converter has no precision {precision!r}")
    int8 = OpenVINOOptions.model_validate(options or {}).model_dump()
    if precision == "int8" and not prequantized and len(calibration) == 0:
        raise ValueError("openvino int8 needs calibration samples")

    disable_telemetry()  # before the first `import openvino`, which already phones home
    import openvino as ov

    path = Path(path)
    shapes = sample_shapes(calibration)  # the data's sample shape fixes the model's free dimensions
    ov_model = _to_openvino(model, shapes)
    settings = {
        "converter": "openvino.convert_model",
        "openvino": package_version("openvino"),
        "route": "SavedModel (batch-1 signature)",
    }
    if precision == "bf16":
        # The weights stay fp32 on disk (the plugin converts them when it compiles): the artifact
        # is the fp32 IR with the precision its runtime is to compile it at.
        ov_model.set_rt_info("bf16", list(RUNTIME_PRECISION))
        settings["inference_precision"] = "bf16"
        settings["weights"] = "fp32 (the fp32 IR; the CPU plugin computes in bf16)"
    keep = tuple(keep_float)
    if precision == "int8" and prequantized:
        settings["quantization"] = "FakeQuantize from QAT ranges"
        if keep:
            settings["keep_float"] = "not applied: a QAT model's FakeQuantize ops come from its own ranges; NNCF does not run"
    elif precision == "int8":
        import nncf

        # In each input's dtype (int32 token ids stay int32), as the IR's inputs are.
        samples = _nncf_items(calibration, model_inputs(model, shapes))
        # NNCF draws progress bars on stdout, which belongs to the results table.
        with contextlib.redirect_stdout(sys.stderr):
            ov_model = nncf.quantize(
                ov_model,
                nncf.Dataset(samples),
                preset=nncf.QuantizationPreset(int8["preset"]),
                subset_size=len(samples),
                fast_bias_correction=int8["fast_bias_correction"],
                **({"ignored_scope": ignored_scope(ov_model, keep, outer_names(model))} if keep else {}),
            )
        settings.update(quantization="NNCF post-training", nncf=nncf.__version__, subset_size=len(samples))
        settings.update({key: int8[key] for key in ("preset", "fast_bias_correction")})

    # Save beside the target so os.replace is an atomic rename; the .bin goes first because
    # read_model finds the weights from the .xml name, so a visible .xml is always complete.
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        # save_model compresses weights to fp16 by default; keep what the precision says.
        ov.save_model(ov_model, staged, compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    settings["compress_to_fp16"] = False
    if keep and precision == "int8" and not prequantized:
        settings.update(kept_float_record(keep, float_layers(path, keep, outer_names(model))))
    return settings


def quantize_with_accuracy_control(model, path: Path, calibration: np.ndarray, options: dict | None,
                                   samples: np.ndarray, score, max_drop: float, keep_float: tuple[str, ...] = ()) -> dict:
    """NNCF's accuracy-aware int8 (``nncf.quantize_with_accuracy_control``) into ``path``: int8,
    then the quantized ops that cost most reverted to float until the metric is within
    ``max_drop`` (absolute) of the fp32 IR's. ``edgekit.convert.mixed`` calls it for int8-mixed.

    Args:
        model, path, calibration, options: as for ``convert``.
        samples: validation inputs as the artifact takes them (no batch axis).
        score: ``score(outputs, indices) -> float``, the task metric of the outputs of the
            validation samples ``indices`` (NNCF scores subsets while it ranks).
        max_drop: the budget, in the metric's units.
        keep_float: layers float from the start (``quantize.keep_float``: NNCF's ignored scope).

    Returns:
        The converter settings (which layers ended up float is read from the IR by the caller).
    """
    opts = OpenVINOOptions.model_validate(options or {}).model_dump()
    disable_telemetry()
    import nncf
    import openvino as ov
    from nncf.common.logging import nncf_logger

    path = Path(path)
    shapes = sample_shapes(calibration)
    ov_model = _to_openvino(model, shapes)
    # NNCF compiles the models it scores with the CPU plugin's defaults (bf16 on AVX-512 BF16
    # CPUs); edgekit's session runs f32, so the IR asks for f32 (the CPU plugin reads rt_info).
    ov_model.set_rt_info("f32", list(RUNTIME_PRECISION))
    described = model_inputs(model, shapes)
    inputs = _nncf_items(calibration, described)
    items = [(x, i) for i, x in enumerate(_nncf_items(samples, described))]

    def validate(compiled, data) -> float:
        output = compiled.output(0)
        rows, indices = [], []
        for x, index in data:
            rows.append(np.asarray(compiled(x)[output], np.float32))
            indices.append(index)
        return score(np.concatenate(rows), np.asarray(indices))

    keep = tuple(keep_float)
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # a dozen INFO lines per search; the caller logs its trials
    try:
        with contextlib.redirect_stdout(sys.stderr):  # progress bars: stdout belongs to the table
            quantized = nncf.quantize_with_accuracy_control(
                ov_model,
                calibration_dataset=nncf.Dataset(inputs),
                validation_dataset=nncf.Dataset(items, lambda item: item[0]),
                validation_fn=validate,
                max_drop=max_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                preset=nncf.QuantizationPreset(opts["preset"]),
                subset_size=len(inputs),
                fast_bias_correction=opts["fast_bias_correction"],
                **({"ignored_scope": ignored_scope(ov_model, keep, outer_names(model))} if keep else {}),
            )
    finally:
        nncf_logger.setLevel(level)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        staged = Path(tmp) / path.name
        ov.save_model(quantized, staged, compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(staged, path)
    return {"converter": "openvino.convert_model", "openvino": package_version("openvino"),
            "route": "SavedModel (batch-1 signature)", "quantization": "NNCF post-training with accuracy control",
            "nncf": nncf.__version__, "subset_size": len(inputs), "compress_to_fp16": False,
            "inference_precision_hint": "f32 (rt_info)", **{key: opts[key] for key in ("preset", "fast_bias_correction")}}


#: CPU kernels int8-fast may pin an int8 convolution to (edgekit.convert.fast), where the CPU
#: plugin's default for it on this CPU, an AMX kernel, is slower: on MobileNetV2 alpha 0.35 at
#: 96x96 the AMX 1x1 convolutions over 16-192 channels took 202 us in all against 132 us with
#: AVX-512 VNNI kernels, the first 3x3 one 38 against 15-23 us. The IR carries the choice (each
#: layer's ``PrimitivesPriority``), so every session that reads it runs it; the plugin takes the
#: first kernel listed that supports the node on the CPU it runs on, its own choice where none
#: does, so the IR still runs on any CPU (checked with oneDNN capped at AVX2 and AVX-512 core).
KERNEL_CHOICES = {
    "avx512 brgconv": "cpu:brgconv_avx512_1x1,cpu:brgconv_avx512",
    "avx512 jit": "cpu:jit_avx512_1x1,cpu:jit_avx512",
}
#: the IR ops a kernel can be pinned on
_PINNABLE = ("Convolution",)


def kernel_alternatives(path: Path, folder: Path) -> dict[str, Path]:
    """Copies of the int8 IR at ``path`` in ``folder``, one per ``KERNEL_CHOICES`` entry, with every
    convolution pinned to that entry's kernels: ``{choice: path}``, for int8-fast to time node by
    node against the plugin's defaults. Empty where this CPU has no AMX int8: there the defaults
    are the kernels listed."""
    import xml.etree.ElementTree as ET

    from edgekit.formats import host_isa

    if "amx_int8" not in host_isa():
        return {}
    names = [layer.get("name") for layer in ET.parse(path).getroot().iter("layer") if layer.get("type") in _PINNABLE]
    out = {}
    for k, choice in enumerate(KERNEL_CHOICES):
        out[choice] = Path(folder) / f"kernels-{k}{Path(path).suffix}"
        pin_kernels(path, out[choice], dict.fromkeys(names, choice))
    return out


def pin_kernels(source: Path, target: Path, pins: dict[str, str]) -> None:
    """Write the IR at ``source`` to ``target`` (and its .bin) with each layer named in ``pins``
    (layer name -> a ``KERNEL_CHOICES`` key) asking the CPU plugin for those kernels."""
    import shutil
    import xml.etree.ElementTree as ET

    source, target = Path(source), Path(target)
    tree = ET.parse(source)
    for layer in tree.getroot().iter("layer"):
        choice = pins.get(layer.get("name"))
        if choice is None:
            continue
        data = layer.find("data")
        if data is None:
            data = ET.Element("data")
            layer.insert(0, data)
        data.set("PrimitivesPriority", KERNEL_CHOICES[choice])
    if source.with_suffix(".bin").resolve() != target.with_suffix(".bin").resolve():
        shutil.copyfile(source.with_suffix(".bin"), target.with_suffix(".bin"))
    tree.write(target, encoding="utf-8", xml_declaration=True)


def ignored_scope(ov_model, layers, outer=()):
    """NNCF's ``IgnoredScope`` of every op of ``ov_model`` made by the Keras ``layers``."""
    import nncf

    names = nodes_of([op.get_friendly_name() for op in ov_model.get_ops()], layers, outer)
    return nncf.IgnoredScope(names=names, validate=False)


#: ops a quantized weight or activation passes through on its way into a compute op
_PASS_THROUGH = {"Convert", "Reshape", "Transpose", "Multiply", "Subtract", "Unsqueeze", "Squeeze"}
_LOW_PRECISION = {"i8", "u8", "i4", "u4"}


def float_layers(path: Path, layers, outer=()) -> list[str]:
    """The layers of ``layers`` that compute in float in the artifact at ``path`` (see ``layer_float``)."""
    floating = layer_float(path, layers, outer)
    return [layer for layer in layers if floating.get(layer)]


def layer_float(path: Path, layers, outer=()) -> dict[str, bool]:
    """Each layer of ``layers`` that has ops in the IR: True where they all compute in float (no
    FakeQuantize and no int8 or lower constant feeds them, directly or through Convert /
    Multiply / Reshape), False where one is quantized. Layers without ops are left out."""
    disable_telemetry()
    import openvino as ov

    def quantized(node, depth=0) -> bool:
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant":
            return node.get_element_type().get_type_name() in _LOW_PRECISION
        if depth and kind not in _PASS_THROUGH:
            return False
        return depth < 4 and any(quantized(value.get_node(), depth + 1) for value in node.input_values())

    seen: dict[str, bool] = {}
    ops = ov.Core().read_model(Path(path)).get_ops()
    layers = traced(layers, [op.get_friendly_name() for op in ops])  # Keras 3 scopes: hidden_1 for hidden
    for op in ops:
        if op.get_type_name() in ("Constant", "FakeQuantize", "Parameter", "Result", "Convert"):
            continue
        layer = node_layer(op.get_friendly_name(), layers, outer)
        if layer is None:
            continue
        seen[layer] = seen.get(layer, True) and not quantized(op)
    return seen


def _nncf_items(samples, inputs) -> list:
    """NNCF dataset items, one per sample: the batch-1 array of a model of one input, else a
    dict keyed by the IR's input names (the Keras names, see ``batch1_signature``)."""
    if len(inputs) == 1:
        return [feed[0] for feed in feeds(samples, inputs)]
    return [{i.name: a for i, a in zip(inputs, feed)} for feed in feeds(samples, inputs)]


def _to_openvino(model, shapes=None):
    """Convert through a SavedModel that holds only the batch-1 signature and its variables."""
    import openvino as ov
    import tensorflow as tf

    concrete = batch1_signature(model, shapes)
    holder = tf.Module()
    # Track the captured variables, not the Keras model: saving a whole tf_keras model also
    # traces every layer's call for Keras' own format, which is slow and converts nothing.
    holder.weights = list(concrete.variables)
    with tempfile.TemporaryDirectory(prefix="edgekit-savedmodel-") as tmp:
        tf.saved_model.save(holder, tmp, signatures=concrete)
        ov_model = ov.convert_model(tmp)
    name_layer_ops(ov_model, model)
    return ov_model


#: OpenVINO ops that hold a Keras layer's kernel (their second input)
_KERNEL_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul")


def name_layer_ops(ov_model, model) -> dict[str, str]:
    """Give the kernel ops that the TensorFlow frontend left unnamed their Keras layer's scope.

    The frontend keeps ``model/layer/op`` names for most ops, but the convolutions it rewrites
    from NHWC come out as ``Convolution_47`` or ``Transpose_1143``: keep_float's ignored scope,
    the per-layer error and the op profiles could not say which layer they are. Each such op is
    matched to the Keras layer whose kernel it holds: per output channel, the same magnitudes
    up to one factor (a batch normalization folded into the weights scales each channel), and
    renamed ``<model>/<layer>/<op type>``. An op that matches no layer, or more than one, keeps
    its name. Returns {old name: new name}.
    """
    kernels = {}
    for layer in _leaf_layers(model):
        weights = layer.get_weights() if hasattr(layer, "get_weights") else []
        if weights and np.ndim(weights[0]) >= 2 and type(layer).__name__ not in ("BatchNormalization", "Embedding"):
            kernel = np.asarray(weights[0], np.float64)
            if type(layer).__name__.startswith("DepthwiseConv"):
                kernel = kernel.reshape(*kernel.shape[:-2], -1)  # (kh, kw, channels x multiplier)
            kernels[layer.name] = np.sort(np.abs(np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)), axis=1)
    known = traced(kernels, [op.get_friendly_name() for op in ov_model.get_ops()])  # Keras 3: conv_1 for conv
    renamed: dict[str, str] = {}
    # layers whose kernel op kept its name (other ops named after a layer, such as the Transpose
    # that ends up with conv_b/Relu's name, say nothing about where its kernel went)
    used = {node_layer(op.get_friendly_name(), known, outer_names(model))
            for op in ov_model.get_ops() if op.get_type_name() in _KERNEL_OPS} - {None}
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() not in _KERNEL_OPS or node_layer(op.get_friendly_name(), known, outer_names(model)):
            continue
        weight = _constant_input(op)
        if weight is None:
            continue
        matches = [name for name, kernel in kernels.items() if name not in used and _same_kernel(weight, kernel)]
        if len(matches) == 1:
            new = f"{model.name}/{matches[0]}/{op.get_type_name()}"
            renamed[op.get_friendly_name()] = new
            op.set_friendly_name(new)
            used.add(matches[0])
    # The bias and activation after a kernel are the same Keras layer; the frontend's transpose
    # pass leaves them unnamed too (Transpose_18252 is a Relu): without their names the layer's
    # output would be read at its convolution, before bias and activation.
    for op in ov_model.get_ordered_ops():
        layer = node_layer(op.get_friendly_name(), known, outer_names(model)) if op.get_type_name() in _KERNEL_OPS else None
        while layer is not None:
            consumers = list(op.output(0).get_target_inputs()) if op.get_output_size() == 1 else []
            nxt = consumers[0].get_node() if len(consumers) == 1 else None
            if nxt is None or nxt.get_type_name() not in _LAYER_TAIL_OPS \
                    or node_layer(nxt.get_friendly_name(), known, outer_names(model)) is not None:
                break
            new = f"{model.name}/{layer}/{nxt.get_type_name()}"
            renamed[nxt.get_friendly_name()] = new
            nxt.set_friendly_name(new)
            op = nxt
    return renamed


#: elementwise ops that finish a kernel's layer (its bias, its activation)
_LAYER_TAIL_OPS = ("Add", "Relu", "Clamp", "Sigmoid", "Tanh", "Swish", "HSwish", "HSigmoid", "Gelu", "Elu", "PRelu",
                   "Mish", "SoftPlus")


def _leaf_layers(model) -> list:
    try:
        return [layer for layer in model._flatten_layers(include_self=False, recursive=True) if not hasattr(layer, "layers")]
    except (AttributeError, TypeError):
        return list(getattr(model, "layers", []))


def _constant_input(op):
    """The data of the Constant behind an op's second input (through Convert / Reshape / Transpose)."""
    if len(op.input_values()) < 2:
        return None
    node = op.input_value(1).get_node()
    for _ in range(4):
        if node.get_type_name() == "Constant":
            return np.asarray(node.get_data(), np.float64)
        if node.get_type_name() not in ("Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze"):
            return None
        node = node.input_value(0).get_node()
    return None


def _same_kernel(weight: np.ndarray, kernel: np.ndarray) -> bool:
    """Whether an OpenVINO weight holds ``kernel`` (channels x sorted magnitudes), each output
    channel scaled by one factor of its own (1 where no normalization was folded in)."""
    channels, size = kernel.shape
    if weight.size != channels * size:
        return False
    for axis in {0, weight.ndim - 1}:
        if weight.shape[axis] != channels:
            continue
        candidate = np.sort(np.abs(np.moveaxis(weight, axis, 0).reshape(channels, -1)), axis=1)
        mask = kernel > 1e-12
        if not mask.any() or (candidate[~mask] > 1e-9).any():
            continue
        ratio = np.where(mask, candidate / np.where(mask, kernel, 1), np.nan)
        spread = np.nanmax(ratio, axis=1) - np.nanmin(ratio, axis=1)
        if np.all(spread <= 1e-4 * np.nanmax(ratio, axis=1) + 1e-9):
            return True
    return False


def read_weights(path: Path) -> list[np.ndarray]:
    """The Constant nodes of an IR. NNCF stores int8 weights symmetric, so 0 means 0."""
    disable_telemetry()
    import openvino as ov

    model = ov.Core().read_model(Path(path))
    return [op.get_data() for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_data().dtype.kind in "fiu"]


#: how read_intermediates runs an artifact and what it compares (edgekit.evaluate.layer_error's "how")
INTERMEDIATES_HOW = ("OpenVINO's CPU plugin at f32",
                     "intermediate outputs of the int8 IR (Model.add_outputs), each layer read after its FakeQuantize, "
                     "against the Keras model rather than the fp32 IR")


def read_intermediates(path: Path, samples: np.ndarray) -> list[dict]:
    """Every activation output of an IR over ``samples``, in topological order (the layer
    error's reader: ``edgekit.evaluate.layer_error``).

    Each node that depends on the input gets its first output added as a model output
    (``Model.add_outputs``) and the IR is compiled on the CPU plugin at f32, as its session does;
    samples run one at a time (batch-1 IR). In an NNCF int8 IR the quantized activations are the
    FakeQuantize nodes' outputs (``<layer path>/fq_output_0``). Entries are ``{"name", "inputs",
    "value", "graph_input", "quantize", "op"}``: the node's friendly name (its TensorFlow op path,
    carrying the Keras layer names, or one OpenVINO made up), the friendly names of the activation
    nodes it read, float32 values with one row per sample, whether it is a FakeQuantize, its type.
    """
    disable_telemetry()
    import openvino as ov

    core = ov.Core()
    model = core.read_model(Path(path))
    source = model.get_parameters()[0]
    # Friendly names repeat (the TensorFlow frontend names a BatchNormalization's Add and the
    # residual Add after it both block_9_project/Add): an entry is named by its node's friendly
    # name, made unique, and linked by the node's own unique name.
    active = {source.get_name(): source.get_friendly_name()}
    taken = set(active.values())
    order, ports = [], []
    quantizing = set()  # FakeQuantize nodes: the quantized activations
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Parameter", "Result", "Constant") or op.get_output_size() == 0:
            continue
        read = [i.get_source_output().get_node().get_name() for i in op.inputs()]
        read = [active[name] for name in read if name in active]
        if not read:
            continue
        name = op.get_friendly_name()
        if name in taken:
            name = f"{name}#{op.get_name()}"
        active[op.get_name()] = name
        taken.add(name)
        order.append((name, read, kind))
        if kind == "FakeQuantize":
            quantizing.add(name)
        ports.append(op.output(0))
    # A tensor name per port finds it among the compiled outputs (a port that already was an
    # output is not added twice, so positions would not line up).
    probes = [f"edgekit_probe_{k}" for k in range(len(ports))]
    named = [set(port.get_names()) for port in ports]
    for port, probe in zip(ports, probes):
        port.get_tensor().add_names({probe})
    model.add_outputs(ports)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    request = compiled.create_infer_request()
    by_name = {name: out for out in compiled.outputs for name in out.get_names()}
    outputs = [by_name.get(probe) or next((by_name[n] for n in names if n in by_name), None)
               for probe, names in zip(probes, named)]
    shape = [int(d) for d in compiled.input(0).get_shape()]
    dtype = np.int32 if "i32" in str(compiled.input(0).get_element_type()) else np.float32
    values: list[list[np.ndarray]] = [[] for _ in order]
    for sample in np.asarray(samples):
        result = request.infer({0: np.asarray(sample, dtype).reshape(shape)})
        for k, port in enumerate(outputs):
            if port is not None:
                values[k].append(np.array(result[port]))
    entries = [{"name": source.get_friendly_name(), "inputs": [], "graph_input": True, "op": "Parameter",
                "value": np.asarray(samples, np.float32).reshape(len(samples), *shape[1:])}]
    for (name, read, kind), per_sample in zip(order, values):
        value = None
        if per_sample and per_sample[0].dtype.kind == "f":
            value = (np.concatenate(per_sample, axis=0) if all(v.ndim >= 1 and v.shape[0] == 1 for v in per_sample)
                     else np.stack(per_sample)).astype(np.float32)
        entries.append({"name": name, "inputs": read, "value": value, "graph_input": False, "quantize": name in quantizing,
                        "op": kind})
    return entries
