"""Arm's Vela compiler (``pip install ethos-u-vela``), run for the ``ethos-u`` target: its CLI in a
process of its own (``python -m ethosu.vela``), so a compiler that crashes fails one row, then
what it wrote read back into plain data:

- which of the model's operators run on the NPU and which stay on the CPU: the compiled model
  keeps every CPU operator as it was and replaces the NPU's parts with ``ethos-u`` custom
  operators, so the two op lists (matched by output tensor) say it per operator of the model;
  Vela's own counts are of its internal operators (a softmax becomes about 30), not the model's;
- why an operator stays on the CPU: Vela's ``Warning (supported operators)`` lines, with a fix
  where one is known;
- SRAM, DRAM and flash use, and the cycle and time estimate, from its summary CSV.

Only this module and edgekit.targets.ethos_u know Vela; nothing here imports TensorFlow.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edgekit import lifeline
from edgekit.errors import shorten

#: longest one Vela compile may take (the MLPerf Tiny models take a second or two here)
TIMEOUT_S = 600.0
#: the custom operator Vela puts the NPU's part of a model into
NPU_OP = "CUSTOM:ethos-u"

#: a fix for the commonest reasons Vela gives, by a phrase of the reason (first match wins)
REASON_FIXES = (
    # Float tensors in an int8 model: its float edges, e.g. the normalization edgekit puts in front
    # (the MLPerf-shaped autoencoder: ADD, MUL, QUANTIZE on the CPU, 12 of 16 operators on the NPU).
    ("unsupported DataType Float", "quantize the model full-integer (int8) and keep it integer end to end: float "
                                   "inputs, outputs and preprocessing stay on the CPU (data.embed_normalization: false "
                                   "moves the normalization to the application)"),
    ("Unsupported opType", None),  # the operator's own fix, below
    ("Batch must be 1", "give the model a fixed batch of 1"),
    ("constant shape", "give the model fixed input shapes (no None dimension)"),
    ("dynamic", "give the model fixed input shapes (no None dimension)"),
    ("stride", "use strides of 1 to 3 (or a strided pooling layer after a stride-1 convolution)"),
    ("Per-axis quantization", "quantize this layer per-tensor"),
    ("IFM depth", "use fewer channels into this layer"),
)
#: the layer to change for operators the Ethos-U has no kernel for, where one is known
OP_FIXES = {
    "TOPK_V2": "take top-k on the application side, from the model's output",
    "REDUCE_PROD": "replace the product reduction (tf.reduce_prod) with a sum or mean",
    "GATHER": "do the lookup on the application side, or use a one-hot Dense layer",
    "CAST": "keep the graph integer from input to output (no tf.cast inside the model)",
    "LAYER_NORM": "use BatchNormalization instead of LayerNormalization",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "use a unidirectional LSTM or a Conv1D model",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "use a Conv1D model (or accept the LSTM on the CPU)",
    "DEQUANTIZE": "a float output: give the model an integer output (or accept the conversion on the CPU)",
    "QUANTIZE": "a float input: give the model an integer input (or accept the conversion on the CPU)",
}


def version() -> str | None:
    """The installed ethos-u-vela's version, or None where it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("ethos-u-vela")
    except metadata.PackageNotFoundError:
        return None


def config_file() -> Path | None:
    """Vela's own configuration file (Arm/vela.ini: the system configurations and memory modes
    it ships), or None where Vela is not installed. Read without importing Vela."""
    import importlib.util

    spec = importlib.util.find_spec("ethosu")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "config_files" / "Arm" / "vela.ini"
    return path if path.is_file() else None


def sections(path: Path) -> dict[str, list[str]]:
    """The system configurations and memory modes a Vela .ini file defines: {"System_Config": [...],
    "Memory_Mode": [...]}."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(path)
    out: dict[str, list[str]] = {"System_Config": [], "Memory_Mode": []}
    for section in parser.sections():
        kind, _, name = section.partition(".")
        if kind in out:
            out[kind].append(name)
    return out


def model_ops(data: bytes) -> list[dict]:
    """Every operator of a .tflite flatbuffer, in order: ``{"op": "CONV_2D", "output": tensor name}``
    (custom operators as ``CUSTOM:<code>``), read with Vela's own schema classes."""
    from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator
    from ethosu.vela.tflite.Model import Model

    names = {value: key for key, value in vars(BuiltinOperator).items() if not key.startswith("_")}
    model = Model.GetRootAsModel(data, 0)
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
            if name == "CUSTOM":
                name = f"CUSTOM:{(code.CustomCode() or b'').decode(errors='replace')}"
            output = graph.Tensors(op.Outputs(0)).Name().decode(errors="replace") if op.OutputsLength() else ""
            ops.append({"op": name, "output": output})
    return ops


def warnings(text: str) -> dict[tuple[str, str], str]:
    """Vela's reasons for keeping operators on the CPU, from its output: {(op, output tensor): reason}."""
    found = {}
    pattern = r"Warning \(supported operators\) operator: (\w+), ofm: '(.*?)'\n(Reason: .*?)(?:\n\s*\n|\Z)"
    for op, ofm, reason in re.findall(pattern, text, flags=re.S):
        found[op, ofm] = " ".join(line.strip() for line in reason.removeprefix("Reason: ").splitlines() if line.strip())
    return found


def fix_for(op: str, reason: str) -> str | None:
    """What to change so that ``op`` runs on the NPU, where a fix is known."""
    for phrase, fix in REASON_FIXES:
        if phrase.lower() in reason.lower():
            return fix or OP_FIXES.get(op) or (f"replace the layer that makes {op}: the Ethos-U has no kernel for it "
                                               "(Vela's SUPPORTED_OPS.md lists those it has)")
    return OP_FIXES.get(op)


def placement(original: list[dict], compiled: list[dict], reasons: dict[tuple[str, str], str]) -> list[dict]:
    """Each operator of the original model with where it runs (``npu`` or ``cpu``) and, for CPU
    operators, Vela's reason and a fix. An operator runs on the CPU when the compiled model still
    holds it (same type, same output tensor; by type where Vela renamed the tensor)."""
    left = [op for op in compiled if op["op"] != NPU_OP]
    out = [{"op": op["op"], "output": op["output"], "on": "npu"} for op in original]
    for cpu in left:  # exact matches first, then by type for the rest
        match = next((row for row in out if row["on"] == "npu" and (row["op"], row["output"]) == (cpu["op"], cpu["output"])),
                     None) or next((row for row in out if row["on"] == "npu" and row["op"] == cpu["op"]), None)
        if match is not None:
            match["on"] = "cpu"
    for row in out:
        if row["on"] == "cpu":
            # Vela warns about its own operators: a FULLY_CONNECTED with a fused ReLU is warned
            # about as the RELU with the same output tensor; then any warning of the same type
            reason = (reasons.get((row["op"], row["output"]))
                      or next((text for (_, ofm), text in reasons.items() if ofm == row["output"]), None)
                      or next((text for (op, _), text in reasons.items() if op == row["op"]), "Vela gave no reason"))
            row.update(reason=reason, fix=fix_for(row["op"], reason))
    return out


def summary(folder: Path) -> dict:
    """Vela's summary CSV (``<model>_summary_<system>.csv``) as {column: value}, numbers as floats."""
    found = sorted(folder.glob("*_summary_*.csv"))
    if not found:
        return {}
    with found[0].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for key, value in (rows[0] if rows else {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


def command(model: Path, out: Path, accelerator: str, configs: list[str], system_config: str, memory_mode: str,
            optimise: str, arena_cache_bytes: int | None) -> list[str]:
    """Vela's command line (an argument list, never a shell string)."""
    args = [sys.executable, "-m", "ethosu.vela", str(model), "--output-dir", str(out), "--accelerator-config", accelerator]
    for config in configs:
        args += ["--config", config]
    args += ["--system-config", system_config, "--memory-mode", memory_mode, "--optimise", optimise]
    if arena_cache_bytes:
        args += ["--arena-cache-size", str(arena_cache_bytes)]
    return args


def compile_model(source: Path, folder: Path, args: list[str]) -> dict:
    """Compile ``source`` with Vela's CLI (``args`` from ``command``, for ``folder/model.tflite``)
    in ``folder``; returns what it found, or ``{"error": one line}``.

    The model is copied to ``folder/model.tflite`` first: Vela names its outputs after the
    input, and a user's file name must not decide them."""
    shutil.copyfile(source, folder / "model.tflite")
    try:
        done = subprocess.run(args, cwd=folder, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
                              preexec_fn=lifeline.preexec())  # dies with its build
    except subprocess.TimeoutExpired:
        return {"error": f"Vela took over {TIMEOUT_S:.0f} s to compile {source.name}"}
    text = f"{done.stdout}\n{done.stderr}"
    compiled = folder / "out" / "model_vela.tflite"
    if done.returncode != 0 or not compiled.is_file():
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("Warning: Consider")]
        why = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        return {"error": f"Vela could not compile {source.name} ({why}): {shorten(lines[-1], 300) if lines else 'no output'}"}
    found = summary(folder / "out")
    if "cycles_total" not in found:  # 0 cycles is a model with nothing on the NPU
        return {"error": f"Vela {version()} wrote no summary of {source.name} (its _summary_*.csv): edgekit reads "
                         "Vela 5.2 to 5.x; pip install 'keras-edgekit[ethos-u]'"}
    original, result = model_ops((folder / "model.tflite").read_bytes()), compiled.read_bytes()
    ops = placement(original, model_ops(result), warnings(text))
    counts = re.search(r"CPU operators = (\d+).*?NPU operators = (\d+)", text, flags=re.S)
    return {"ops": ops, "compiled_ops": [op["op"] for op in model_ops(result)], "summary": found,
            "vela_counts": {"cpu": int(counts.group(1)), "npu": int(counts.group(2))} if counts else None,
            "compiled": compiled}
