#!/usr/bin/env python3
"""Does the per-layer int8 error compare the right tensors? (issue 27, item 1)

For each finished build (a run directory with int8 rows), the per-layer error of its int8
artifacts is measured again with the code on the path, and checked against the converters' own
debuggers on the same artifacts and samples:

- TFLite: ``tf.lite.experimental.QuantizationDebugger`` (``layer_statistics_dump``): each quantized
  op's output against the float op run on the same dequantized inputs, as an SNR (the op
  output's power over the mean squared error of its NumericVerify diffs). edgekit's
  ``local_snr_db`` is the same comparison with the Keras layers.
- ONNX: ``onnxruntime.quantization.qdq_loss_debug``: each activation of the float model
  ``quantize_static`` read (the build's fp32 artifact after ``quant_pre_process``) against the QDQ
  model's after its DequantizeLinear (``xmodel_err``). edgekit's ``snr_db`` is the same comparison
  with the Keras layers.
- OpenVINO: no debugger; the layers are checked against the model output's SNR only.

Printed per run and format: layers compared / total (and what the build itself recorded), the
lowest fp32 agreement of a matched tensor, the model output's SNR against Keras (and its last
layer's entry: a softmax is compared at its logits), the entries reading lowest and adding most,
the entries further below the last layer's SNR than ``--margin`` (now, and as the build
recorded them), and the largest difference to the debugger with the worst three by each (TFLite:
the entries that are one op, as the debugger's rows are).

Usage (from the repository root, in the venv)::

    python benchmarks/layer_error_check.py RUN_DIR [RUN_DIR ...] [--samples 64] [--margin 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def snr(ref, q) -> float:
    ref, q = np.asarray(ref, np.float64).ravel(), np.asarray(q, np.float64).ravel()
    noise = float(np.sum((ref - q) ** 2))
    return 120.0 if noise <= float(np.sum(ref ** 2)) * 1e-12 else 10 * math.log10(float(np.sum(ref ** 2)) / noise)


def load_run(run: Path):
    """The run's Keras model as its artifacts were converted from it, its calibration and validation inputs."""
    from edgekit.convert.preprocess import with_normalization
    from edgekit.data import load_dataset
    from edgekit.models import register_custom_layers
    from edgekit.recipe.schema import load_recipe
    from edgekit.train.stage import load_stage_model

    register_custom_layers()
    recipe = load_recipe(run / "recipe.yaml")
    data = load_dataset(recipe.data, recipe.seed, recipe.quantize.calibration_samples, recipe.task)
    model = load_stage_model(run / "model" / "model.keras")
    exported = with_normalization(model, data.normalization) if getattr(data, "embedded", False) else model
    x_val = data.artifact_inputs(data.x_val) if hasattr(data, "artifact_inputs") else data.x_val
    return exported, np.asarray(data.x_calib, np.float32), np.asarray(x_val, np.float32)


def check(run: Path, count: int, margin: float) -> dict:
    from edgekit.evaluate.layer_debuggers import one_op_entries, onnx_debugger_snr, tflite_debugger_snr
    from edgekit.evaluate.layer_error import keras_layers, layer_errors
    from edgekit.formats import FORMATS

    model, calibration, x_val = load_run(run)
    model_layers = [leaf["name"] for leaf in keras_layers(model)]
    samples = x_val[:count]
    expected = np.asarray(model(samples, training=False))
    out = {}
    for name in ("tflite", "onnx", "openvino"):
        fmt = FORMATS[name]
        artifact, twin = run / "artifacts" / f"{name}-int8{fmt.suffix}", run / "artifacts" / f"{name}-fp32{fmt.suffix}"
        if not artifact.is_file():
            continue
        record = layer_errors(fmt, model, artifact, samples, reference=twin)
        entries = record["layers"]
        output_snr = snr(expected, fmt.load_runtime()(artifact, 1, {}).predict(samples))
        # a softmax flattens the output's error: the yardstick is the last layer's entry (its logits)
        last = next(e for e in entries if model_layers[-1] in e["group"]) if any(model_layers[-1] in e["group"] for e in entries) else None
        yardstick = last["snr_db"] if last is not None else output_snr
        recorded = json.loads((run / "layer_errors" / f"{name}-int8.json").read_text()) \
            if (run / "layer_errors" / f"{name}-int8.json").is_file() else {}
        print(f"  {name}: {record['layers_matched']}/{record['layers_total']} layers in {len(entries)} entries "
              f"(the build recorded {recorded.get('layers_matched')}/{recorded.get('layers_total')}), unmatched "
              f"{record['unmatched'] or 'none'}; fp32 agreement >= {min(e['fp32_snr_db'] for e in entries):.1f} dB; "
              f"output SNR {output_snr:.1f} dB, its last layer's entry {yardstick:.1f} dB; {record['seconds']:.1f} s")
        lowest = sorted(entries, key=lambda e: e["snr_db"])[:3]
        print("     lowest snr_db:", "; ".join(f"{e['layer']} {e['snr_db']}" for e in lowest))
        print("     adds most (added_db):", "; ".join(f"{e['layer']} {e['added_db']}" for e in entries[:3]))
        floor = yardstick - margin
        below = [e for e in entries if e["snr_db"] < floor]
        old_below = [e for e in recorded.get("layers", []) if e["snr_db"] < floor]
        print(f"     more than {margin:g} dB below the last layer's: {len(below)} now"
              + (" (" + "; ".join(f"{e['layer']} {e['snr_db']}, own quantize step {e.get('quantize_snr_db')}" for e in below[:4]) + ")"
                 if below else "")
              + f", {len(old_below)} as the build recorded"
              + (": " + "; ".join(f"{e['layer']} {e['snr_db']}" for e in old_below[:4]) if old_below else ""))
        result = {"record": record, "output_snr_db": output_snr, "yardstick_db": yardstick, "below": [e["layer"] for e in below],
                  "recorded_below": [e["layer"] for e in old_below]}
        if name == "tflite":
            theirs = tflite_debugger_snr(model, calibration, samples, artifact)
            single = one_op_entries(record, fmt.load_intermediates_reader()(artifact, samples[:1]))
            both = [(e, theirs[e["tensor"]]) for e in single
                    if e["tensor"] in theirs and e["local_snr_db"] is not None and theirs[e["tensor"]] < 100]
            result["debugger"] = _compare(both, "local_snr_db", f"QuantizationDebugger ({len(both)} one-op entries of "
                                                                  f"{len(entries)})")
            result["below_debugger_agrees"] = [e["layer"] for e in below if theirs.get(e["tensor"], 120) < floor]
        if name == "onnx" and twin.is_file():
            theirs = onnx_debugger_snr(twin, artifact, samples)
            pairs = [(e, theirs.get(e["tensor"].split(";")[-1].removesuffix("_DequantizeLinear_Output"))) for e in entries]
            both = [(e, t) for e, t in pairs if t is not None]
            result["debugger"] = _compare(both, "snr_db", f"qdq_loss_debug xmodel_err ({len(both)}/{len(entries)} entries)")
        out[name] = result
    return out


def _compare(both: list, key: str, label: str) -> dict:
    diffs = [abs(e[key] - t) for e, t in both]
    ours = [e["layer"] for e, _ in sorted(both, key=lambda p: p[0][key])[:3]]
    theirs = [e["layer"] for e, _ in sorted(both, key=lambda p: p[1])[:3]]
    print(f"     vs {label}: {key} differs by at most {max(diffs, default=float('nan')):.2f} dB "
          f"(median {float(np.median(diffs)) if diffs else float('nan'):.2f}); worst 3 "
          + ("the same" if ours == theirs else f"ours {ours}, theirs {theirs}"))
    return {"max_diff_db": max(diffs, default=None), "ours": ours, "theirs": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--samples", type=int, default=64, help="validation samples compared")
    parser.add_argument("--margin", type=float, default=10.0, help="dB below the model output's SNR that is flagged")
    parser.add_argument("--json", type=Path, help="write every record and comparison here")
    args = parser.parse_args()
    results = {}
    for run in args.runs:
        print(f"# {run}")
        results[str(run)] = check(run, args.samples, args.margin)
    if args.json:
        args.json.write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
