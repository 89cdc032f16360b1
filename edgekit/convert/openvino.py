"""Keras -> OpenVINO IR (.xml + .bin), at fp32, bf16 (the fp32 IR, run at the CPU plugin's
bf16) or int8 (NNCF post-training quantization)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekit.convert import as_input_dtype, batch1_signature, input_dtype
from edgekit.formats import OpenVINOOptions
from edgekit.runtimes import package_version
from edgekit.runtimes.openvino import disable_telemetry


#: where an IR says at which precision its runtime compiles it (OpenVINO's own rt_info section,
#: which edgekit.runtimes.openvino reads)
RUNTIME_PRECISION = ("runtime_options", "INFERENCE_PRECISION_HINT")


def convert(model, path: Path, precision: str, calibration: np.ndarray, options: dict | None = None,
            prequantized: bool = False) -> dict:
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

    Returns:
        The converter settings used.

    Raises:
        ValueError: for an unknown precision or option.
    """
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"openvino converter has no precision {precision!r}")
    int8 = OpenVINOOptions.model_validate(options or {}).model_dump()
    if precision == "int8" and not prequantized and len(calibration) == 0:
        raise ValueError("openvino int8 needs calibration samples")

    disable_telemetry()  # before the first `import openvino`, which already phones home
    import openvino as ov

    path = Path(path)
    ov_model = _to_openvino(model)
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
    if precision == "int8" and prequantized:
        settings["quantization"] = "FakeQuantize from QAT ranges"
    elif precision == "int8":
        import nncf

        # In the model's input dtype (int32 token ids stay int32), as the IR's input is.
        samples = [np.ascontiguousarray(s[None]) for s in as_input_dtype(calibration, input_dtype(model))]
        # NNCF draws progress bars on stdout, which belongs to the results table.
        with contextlib.redirect_stdout(sys.stderr):
            ov_model = nncf.quantize(
                ov_model,
                nncf.Dataset(samples),
                preset=nncf.QuantizationPreset(int8["preset"]),
                subset_size=len(samples),
                fast_bias_correction=int8["fast_bias_correction"],
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
    return settings


def _to_openvino(model):
    """Convert through a SavedModel that holds only the batch-1 signature and its variables."""
    import openvino as ov
    import tensorflow as tf

    concrete = batch1_signature(model)
    holder = tf.Module()
    # Track the captured variables, not the Keras model: saving a whole tf_keras model also
    # traces every layer's call for Keras' own format, which is slow and converts nothing.
    holder.weights = list(concrete.variables)
    with tempfile.TemporaryDirectory(prefix="edgekit-savedmodel-") as tmp:
        tf.saved_model.save(holder, tmp, signatures=concrete)
        return ov.convert_model(tmp)


def read_weights(path: Path) -> list[np.ndarray]:
    """The Constant nodes of an IR. NNCF stores int8 weights symmetric, so 0 means 0."""
    disable_telemetry()
    import openvino as ov

    model = ov.Core().read_model(Path(path))
    return [op.get_data() for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_data().dtype.kind in "fiu"]
