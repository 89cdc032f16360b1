"""The input contract of every artifact: how to feed it and how to run it to get its row's numbers.

For each row with an artifact, ``artifacts/<row id>.contract.json`` (and the row's ``contract``
field in results.json) says, per input and output: name, dtype, shape, layout, the value range
the artifact expects (and the scale and zero point of integer I/O), every preprocessing step
from the raw data to the tensor, in order, each marked inside the artifact or not; and the
runtime settings that reproduce the row (in the runtime's own terms, from the format table's
``user_settings``: OpenVINO's precision hint, threads, onnxruntime's optimization level, LiteRT's
delegates). Built from results.json alone (its data, model and row blocks), so ``edgekit
report`` can write it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: bump when a field changes meaning (fields are only ever added)
CONTRACT_VERSION = 1
#: how a contract file is named in artifacts/
SUFFIX = ".contract.json"
#: layouts by rank of a sample (batch first), for image data and for the rest
_IMAGE_LAYOUTS = {4: "NHWC (batch, height, width, channels)", 5: "NDHWC (batch, depth, height, width, channels)"}
_LAYOUTS = {1: "N (batch)", 2: "NF (batch, features)", 3: "NTC (batch, steps, channels)",
            4: "NHWC (batch, height, width, channels)"}


def attach(results: dict, run_dir: Path) -> list[Path]:
    """Write every row's contract into ``run_dir/artifacts`` and record it in the row (its
    ``contract`` field); returns the files written. Rows without an artifact (failed
    conversions, interrupted rows) get none."""
    written = []
    for row in results.get("rows", []):
        contract = row_contract(row, results)
        if contract is None:
            continue
        path = Path(run_dir) / "artifacts" / f"{row['id']}{SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(contract, indent=2) + "\n")
        tmp.replace(path)
        row["contract"] = {"file": f"artifacts/{path.name}", **contract}
        written.append(path)
    return written


def row_contract(row: dict, results: dict) -> dict | None:
    """One row's contract, or None for a row without an artifact or a known interface."""
    io = row.get("io") or {}
    if not row.get("path") or not io.get("inputs") or row.get("status") in ("failed", "interrupted"):
        return None
    data = results.get("data") or {}
    inputs = [_input(info, data, len(io["inputs"])) for info in io["inputs"]]
    _mark_fold(inputs, (row.get("settings") or {}).get("input_fold"))
    outputs = [_output(info, results, len(io["outputs"])) for info in io.get("outputs") or []]
    metric = results.get("primary_metric")
    return {
        "contract_version": CONTRACT_VERSION,
        "row": row["id"],
        "artifact": row["path"],
        "format": row["format"], "precision": row["precision"], "model": row.get("model"), "target": row["target"],
        "inputs": inputs,
        "outputs": outputs,
        "runtime": {"runtime": row.get("runtime"), **runtime_settings(row),
                    **({"keras": (results.get("model") or {}).get("keras")} if row["format"] == "keras" else {})},
        "metrics": {"primary": metric, "values": row.get("metrics") or {},
                    "on": f"the test split ({(data.get('splits') or {}).get('test')} samples), one batch-1 inference each"},
    }


def _mark_fold(inputs: list[dict], fold: dict | None) -> None:
    """Where the model's input scaling was folded into its first layer (``edgekit.convert.fold_input``,
    a one-input model): the artifact takes the raw input, and its scaling step says where it went."""
    if not fold or not fold.get("folded") or len(inputs) != 1:
        return
    tensor = inputs[0]
    # the fold names layers; the data side's step ("model layers", from the same reader) names
    # them with their classes: one shape for both, so readers of the contract see one
    layers = [layer if isinstance(layer, dict) else {"layer": layer, "class": None} for layer in fold.get("layers") or []]
    folded = {"step": "model layers", "layers": layers, "scale": fold.get("scale"),
              "offset": fold.get("offset"), "formula": "x * scale + offset", "inside_artifact": True,
              "folded_into": fold.get("into"), "by": "the model's own first layers",
              "detail": f"no op of its own: folded into {fold.get('into')}'s weights"
                        + (f", after one add of {fold['shift']['value']} (it pads with zeros)" if fold.get("shift") else "")}
    steps_ = tensor.setdefault("preprocessing", [])
    at = next((k for k, step in enumerate(steps_) if step.get("step") == "model layers"), None)
    if at is None:
        steps_.append(folded)
    else:
        steps_[at] = {**steps_[at], **{k: v for k, v in folded.items() if k in ("folded_into", "detail")}}
    if fold.get("raw_range"):
        tensor["raw_range"] = {"min": fold["raw_range"][0], "max": fold["raw_range"][1],
                               "of": "the raw input the artifact takes (its scaling is inside, folded)"}


def runtime_settings(row: dict) -> dict[str, Any]:
    """The settings that reproduce ``row``, in its runtime's own terms (the format table's
    ``user_settings``; the Keras baseline's TensorFlow threads)."""
    from edgekit.formats import FORMATS

    settings = dict(row.get("settings") or {})
    fmt = FORMATS.get(row["format"])
    ran_in = str(row.get("runtime") or "").split(" ")[0]
    if fmt is not None and ran_in in fmt.runtime_packages:
        return fmt.load_user_settings()(settings)
    if fmt is not None:  # another runtime ran the format's file (TFLite Micro, Vela's compile): its settings as they are
        return {"settings": settings}
    return {"call": "keras.saving.load_model(PATH) for a Keras 3 file, tf_keras.models.load_model(PATH) for tf_keras; "
                    "model(x, training=False)",
            "tensorflow_intra_op_threads": settings.get("intra_op_threads", settings.get("threads")),
            "timed_as": settings.get("mode")}


def _input(info: dict, data: dict, count: int) -> dict[str, Any]:
    """One input: its tensor, layout, range and the steps from raw data to it."""
    from edgekit.runtimes import plain_name

    name = info["name"]
    shape = info.get("shape") or []
    out = {"name": name, "dtype": info["dtype"], "shape": shape, "layout": layout(shape, data.get("source"), info["dtype"])}
    ranges = data.get("input_range") or {}
    found = ranges.get(plain_name(name)) or (next(iter(ranges.values())) if count == 1 and ranges else None)
    quant = info.get("quantization")
    if quant:
        out["quantization"] = quant
    if found is not None:
        out["value_range"] = {"min": found[0], "max": found[1], "of": "real values, as the test split and the int8 "
                              "calibration subset held them" + (" before quantization" if quant else "")}
    if representable := _representable(info):
        out["representable"] = representable
    out["preprocessing"] = steps(plain_name(name), info, data, count)
    if warning := _record(plain_name(name), data, count).get("warning"):
        out["warning"] = warning  # the data's range does not fit what the model's first layers expect
    return out


def _record(name: str, data: dict, count: int) -> dict:
    """What ``edgekit.data.in_model`` found in front of input ``name`` ({} for nothing)."""
    records = (data.get("input_preprocessing") or {}).get("inputs") or []
    return next((r for r in records if r.get("input") == name), records[0] if count == 1 and records else {})


def _representable(info: dict) -> list[float] | None:
    """The real values an integer tensor with a scale can hold: [(min - zero point) * scale, (max - ...) * scale]."""
    quant = info.get("quantization")
    if not quant or not np.issubdtype(np.dtype(info["dtype"]), np.integer):
        return None
    limits = np.iinfo(np.dtype(info["dtype"]))
    return [(limits.min - quant["zero_point"]) * quant["scale"], (limits.max - quant["zero_point"]) * quant["scale"]]


def layout(shape: list, source: str | None, dtype: str = "float32") -> str:
    """How a tensor's axes are laid out, from its rank and the data source."""
    from edgekit.data.in_model import PIXEL_SOURCES

    if source == "text" or (len(shape) == 2 and np.issubdtype(np.dtype(dtype), np.integer)):
        return "NT (batch, token ids)" if len(shape) == 2 else f"rank {len(shape)}"
    if source in PIXEL_SOURCES and len(shape) in _IMAGE_LAYOUTS:
        return _IMAGE_LAYOUTS[len(shape)]
    return _LAYOUTS.get(len(shape), f"rank {len(shape)}, batch first")


def steps(name: str, info: dict, data: dict, count: int) -> list[dict[str, Any]]:
    """Every step from the raw data to what the model computes on, in the order they apply: the
    ones a user does (the read, a pixel scale, a normalization kept outside, the quantization or
    cast of an integer input: ``inside_artifact`` false), then the ones the artifact does itself
    (an embedded normalization, the model's own first layers: ``inside_artifact`` true)."""
    outside, inside = [_read_step(data)], []
    mine = _record(name, data, count)
    scaled = mine.get("scaled_by", 1.0)
    if data.get("source") == "images":
        outside.append({"step": "scale", "multiply": scaled / 255.0, "add": 0.0, "inside_artifact": False,
                        "detail": "pixels 0..255 as they are (float32)" if scaled == 255.0
                        else "x = pixel / 255: brightness in [0, 1]"})
    elif scaled != 1.0:
        outside.append({"step": "scale", "multiply": scaled, "add": 0.0, "inside_artifact": False,
                        "detail": f"edgekit's [0, 1] brightness times {scaled:g}: the range the model's first layers expect"})
    norm = data.get("normalize") or {}
    dtype = np.dtype(info["dtype"])
    normalized = norm.get("kind", "none") != "none" and (not norm.get("inputs") or name in norm["inputs"])
    if normalized and (np.issubdtype(dtype, np.floating) or norm.get("embedded")):
        embedded = bool(norm.get("embedded"))
        (inside if embedded else outside).append({
            "step": "normalize", "kind": norm["kind"], "per": norm.get("per"), "formula": norm.get("formula"),
            "inside_artifact": embedded,
            "statistics": "inside the artifact (layers normalize_shift, normalize_scale)" if embedded
            else "preprocess.json in the run directory (fitted on the training split)",
            "by": "data.normalize" + (" with data.embed_normalization" if embedded else "")})
    quant = info.get("quantization")
    if quant and np.issubdtype(dtype, np.integer):
        limits = np.iinfo(dtype)
        outside.append({"step": "quantize", "scale": quant["scale"], "zero_point": quant["zero_point"],
                        "dtype": dtype.name, "formula": f"q = clip(round(x / scale) + zero_point, {limits.min}, {limits.max})",
                        "inside_artifact": False})
    elif np.issubdtype(dtype, np.integer):
        outside.append({"step": "cast", "dtype": dtype.name, "detail": "integer values (ids, categories) as they are",
                        "inside_artifact": False})
    if mine:
        inside.append({"step": "model layers", "layers": mine.get("layers"), "scale": mine.get("scale"),
                       "offset": mine.get("offset"), "formula": "x * scale + offset", "inside_artifact": True,
                       "expects": mine.get("expects") or "the data's own range", "by": "the model's own first layers"})
    return outside + inside


def _read_step(data: dict) -> dict[str, Any]:
    """How edgekit read the raw data (never inside the artifact)."""
    source = data.get("source")
    step: dict[str, Any] = {"step": "read", "source": source, "inside_artifact": False}
    if source == "images":
        images = data.get("images") or {}
        channels = images.get("channels")
        step.update(size=images.get("image_size"), channels=channels, resize=images.get("resize"),
                    detail=f"decode each image (Pillow), convert to {_MODES.get(channels, channels)}, resize to "
                           f"{'x'.join(str(v) for v in images.get('image_size') or [])} ({images.get('resize')})")
    elif source == "csv":
        step["detail"] = "the csv's feature columns in file order (the label column left out), as float32"
    elif source == "npz":
        step["detail"] = "the npz's x arrays as they are (float32; integer inputs of several keep int64)"
    elif source == "text":
        tokenizer = data.get("tokenizer") or {}
        step.update(step="tokenize", files=["vocab.txt", "tokenizer.json"],
                    detail="split the text into tokens and map them to ids with vocab.txt (tokenizer.json holds "
                           f"every setting){'; ' + json.dumps(tokenizer, sort_keys=True) if tokenizer else ''}")
    else:
        from edgekit.data.builtins import BUILTINS

        builtin = BUILTINS.get(str(source))
        step["detail"] = f"edgekit's builtin {source}: {builtin.description}" if builtin else str(source)
    return step


_MODES = {1: "grey (L)", 3: "RGB (alpha dropped, grey replicated)", 4: "RGBA"}


def _output(info: dict, results: dict, count: int) -> dict[str, Any]:
    """One output: its tensor, how to read it back to floats, and what it means."""
    task = results.get("task")
    data = results.get("data") or {}
    shape = info.get("shape") or []
    source = data.get("source") if task == "segmentation" else None  # a mask is laid out as the image
    out = {"name": info["name"], "dtype": info["dtype"], "shape": shape, "layout": layout(shape, source, "float32")}
    quant = info.get("quantization")
    if quant:
        out["quantization"] = quant
        out["decode"] = "y = (q - zero_point) * scale"
        if representable := _representable(info):
            out["representable"] = representable
    kind = (results.get("model") or {}).get("output")
    if count == 1 and task in ("classification", "segmentation") and data.get("classes"):
        out["meaning"] = (f"{kind or 'scores'} of the {len(data['classes'])} classes"
                          f"{' per pixel' if task == 'segmentation' else ''}, in the order of "
                          f"{data.get('labels_file') or 'data.classes'}")
    elif count == 1 and task == "regression" and data.get("targets"):
        out["meaning"] = f"the targets {', '.join(data['targets'])}, in their units"
    elif task == "fidelity" or count > 1:
        heads = (data.get("outputs") or {}).get(info["name"])
        out["meaning"] = (f"{heads['task']} ({heads['labels']})" if heads else
                          "scored against the Keras model's same output (snr_db)")
    return out


def markdown_lines(results: dict) -> list[str]:
    """report.md's input contract: one table row per input and output of each artifact (the
    rows of one artifact on several targets once), and where the files are."""
    lines = []
    seen = set()
    for row in results.get("rows", []):
        contract = row.get("contract")
        if not contract or row["id"].rsplit("@", 1)[0] in seen:
            continue
        seen.add(row["id"].rsplit("@", 1)[0])
        for tensor, what in [(t, "input") for t in contract["inputs"]] + [(t, "output") for t in contract["outputs"]]:
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in tensor_cells(row["id"], tensor, what, contract)) + " |")
    if not lines:
        return []
    head = ["row", "tensor", "dtype", "shape", "layout", "range / quantization", "preprocessing (inside the artifact: *)",
            "runtime settings"]
    warnings = [f"- warning: {w}" for w in data_warnings(results)]
    return ["", "## Input contract", "",
            "What each artifact takes and how to run it to get its row's numbers (every row's "
            "`artifacts/<row id>.contract.json`; results.json rows' `contract`).", "", *warnings,
            *([""] if warnings else []),
            "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|", *lines]


def data_warnings(results: dict) -> list[str]:
    """The data's inputs whose range does not fit what the model's own first layers expect."""
    records = ((results.get("data") or {}).get("input_preprocessing") or {}).get("inputs") or []
    return [r["warning"] for r in records if r.get("warning")]


def tensor_cells(row_id: str, tensor: dict, what: str, contract: dict) -> list[str]:
    """The cells of one input or output for the reports' contract tables (plain text)."""
    quant = tensor.get("quantization")
    shown_range = ""
    if tensor.get("value_range"):
        shown_range = f"{tensor['value_range']['min']:.4g}..{tensor['value_range']['max']:.4g}"
    if quant:
        shown_range += f"{'; ' if shown_range else ''}scale {quant['scale']:.6g}, zero point {quant['zero_point']}"
    if what == "input":
        prep = "; ".join(_step_text(s) for s in tensor.get("preprocessing") or [])
        runtime = _settings_text(contract["runtime"])
    else:
        prep = "; ".join(p for p in (tensor.get("decode"), tensor.get("meaning")) if p)
        runtime = ""
    return [row_id, f"{what} {tensor['name']}", tensor["dtype"], str(tensor.get("shape")),
            tensor.get("layout", ""), shown_range or "-", prep or "-", runtime or ""]


def _step_text(step: dict) -> str:
    star = "*" if step.get("inside_artifact") else ""
    if step["step"] == "model layers":
        layers = ", ".join(layer["layer"] + (f" ({layer['class']})" if layer.get("class") else "")
                           for layer in step.get("layers") or [])
        said = [f"expects {step['expects']}"] if step.get("expects") else []
        said += [step["detail"]] if step.get("folded_into") and step.get("detail") else []
        return f"{star}model layers {layers}" + (f": {'; '.join(said)}" if said else "")
    if step["step"] == "quantize":
        return f"{star}quantize to {step.get('dtype')}"
    if step["step"] == "normalize":
        return f"{star}normalize ({step.get('kind')}, {step.get('statistics')})"
    if step["step"] == "read" and step.get("source") == "images":
        return f"read images at {'x'.join(str(v) for v in step.get('size') or [])}, {_MODES.get(step.get('channels'), '')}"
    if step["step"] == "read":
        return f"read {step.get('source')}"
    return f"{star}{step['step']}: {step.get('detail', '')}".rstrip(": ")


def _settings_text(runtime: dict) -> str:
    skip = {"runtime", "call", "note"}
    parts = []
    for key, value in runtime.items():
        if key in skip or value is None:
            continue
        parts.append(f"{key} {json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value}")
    note = f" ({runtime['note']})" if runtime.get("note") else ""
    return f"{runtime.get('runtime') or ''}: " + ", ".join(parts) + note
