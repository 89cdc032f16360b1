"""C++ sources of a model for TFLite Micro: what an embedded project compiles in, written by the
targets that run on microcontrollers (mcu) and their NPUs (ethos-u) beside a build's artifact.

For a row ``<stem>@<device>``, ``artifacts/<row>.cc`` holds the flatbuffer as a 16-byte aligned
array (TFLM reads the model in place, and its flatbuffer needs the alignment) and ``<row>.h``
declares it with the target's constants (the tensor arena's size, say) and an op resolver for
exactly the model's operator types: ``MicroMutableOpResolver<N>`` with one ``Add`` call per type,
so a firmware neither under-counts N nor misses an op.

No name that reaches the files can break them: device names come from profile file names and
model names from files, so each is made safe for where it goes: C identifiers (ASCII letters,
digits and single underscores, with a short hash of the original where anything was replaced,
so two names never meet in one symbol), ``//`` comments (printable ASCII without ``\\``, which
would continue the comment onto the next line, or ``?``, which starts trigraphs) and the file
names inside ``#include "..."`` lines.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from edgekit.errors import shorten

#: TFLM's builtin operators that MicroMutableOpResolver has an Add method for (its header,
#: tensorflow/lite/micro/micro_mutable_op_resolver.h, 2026-08). The method is the CamelCase
#: of the name (CONV_2D: AddConv2D), except for the spellings in ADD_SPELLINGS.
RESOLVER_BUILTINS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND BROADCAST_ARGS
BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV
DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED
GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG
LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL
PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH
SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())
#: the Add methods whose spelling is not the CamelCase of the operator's name
ADD_SPELLINGS = {"BATCH_MATMUL": "AddBatchMatMul", "CUMSUM": "AddCumSum", "PADV2": "AddPadV2",
                 "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM"}
#: custom operators (``CUSTOM:<code>`` in an op list) with an Add method of their own; ethos-u:
#: the operator Vela compiles the NPU's part of a model into
CUSTOM_ADDS = {
    "ethos-u": "AddEthosU", "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer", "TFLM_DECODE": "AddDecode", "SignalDelay": "AddDelay",
    "SignalEnergy": "AddEnergy", "SignalFftAutoScale": "AddFftAutoScale", "SignalFilterBank": "AddFilterBank",
    "SignalFilterBankLog": "AddFilterBankLog", "SignalFilterBankSquareRoot": "AddFilterBankSquareRoot",
    "SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction", "SignalFramer": "AddFramer",
    "SignalIrfft": "AddIrfft", "SignalOverlapAdd": "AddOverlapAdd", "SignalPCAN": "AddPCAN", "SignalRfft": "AddRfft",
    "SignalStacker": "AddStacker", "SignalWindow": "AddWindow",
}
#: characters a row id keeps in file names and comments as it is (edgekit's own ids use no others)
_PLAIN = re.compile(r"[A-Za-z0-9_.@+-]*")
#: the longest file stem or identifier written (file systems allow 255 bytes per name)
_LONGEST = 120


def add_method(op: str) -> str | None:
    """MicroMutableOpResolver's method that registers ``op`` (a builtin's name such as ``CONV_2D``,
    or ``CUSTOM:<code>``), or None where it has none."""
    if op.startswith("CUSTOM:"):
        return CUSTOM_ADDS.get(op.partition(":")[2])
    if op not in RESOLVER_BUILTINS:
        return None
    return ADD_SPELLINGS.get(op) or "Add" + "".join(part if part[0].isdigit() else part.capitalize()
                                                    for part in op.split("_"))


def _mark(text: str) -> str:
    """A short hash of ``text``: what keeps two names apart once their odd characters were replaced."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def c_identifier(text: str) -> str:
    """A C/C++ identifier for ``text`` (``tflite-int8@cortex-m4`` -> ``tflite_int8_cortex_m4``): ASCII
    letters, digits and single underscores, never a leading digit or underscore (C++ reserves
    ``__`` and ``_X``); where ``text`` held characters other than ``[A-Za-z0-9_.@+-]``, a hash
    of it is appended, so different hostile names never give one symbol."""
    name = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", text)).strip("_")[:_LONGEST] or "model"
    if not _PLAIN.fullmatch(text):
        name = f"{name}_{_mark(text)}"
    return name if not name[0].isdigit() else f"m_{name}"


def c_comment(text: str) -> str:
    """``text`` made safe inside a ``//`` comment: printable ASCII only, without ``\\`` (a line
    splice would carry the comment onto the next line) or ``?`` (trigraphs such as ``??/``)."""
    return shorten(re.sub(r"[^\x20-\x7e]|[\\?]", "_", text), 200)


def file_stem(row_id: str) -> str:
    """The file name stem of a row's generated files: the row id where it is plain
    (``[A-Za-z0-9_.@+-]``, as edgekit's own ids are), else with every other character replaced
    and a hash of the id appended; safe in a path and inside ``#include "..."``."""
    if _PLAIN.fullmatch(row_id) and not row_id.startswith(".") and len(row_id) <= _LONGEST:
        return row_id
    safe = re.sub(r"[^A-Za-z0-9_.@+-]", "_", row_id).lstrip(".")[:_LONGEST]
    return f"{safe}-{_mark(row_id)}"


def _comment(text: str, width: int = 100) -> list[str]:
    """``text`` as ``//`` comment lines, made safe (``c_comment``) and wrapped at ``width`` columns."""
    import textwrap

    return [f"// {line}" for line in textwrap.wrap(c_comment(text), width - 3, break_long_words=True, break_on_hyphens=False)
            or [""]]


def op_resolver(ops: list[str]) -> dict:
    """The op resolver of a model whose operator types are ``ops``: ``adds`` (one Add method per
    type, in the model's order), ``count`` (N of ``MicroMutableOpResolver<N>``) and ``unknown``
    (types without an Add method: TFLM has no kernel for them, or edgekit does not know it)."""
    adds, unknown = [], []
    for op in dict.fromkeys(ops):
        method = add_method(op)
        (adds if method else unknown).append(method or op)
    return {"type": f"tflite::MicroMutableOpResolver<{len(adds)}>", "count": len(adds), "adds": adds, "unknown": unknown}


def in_a_build(variant) -> bool:
    """Whether the artifact is a build's own (run_dir/artifacts/<stem>.tflite), beside which its
    target's files belong; a file given to `edgekit bench` gets none (its folder is the user's)."""
    path = Path(variant.path) if variant.path is not None else None
    return path is not None and path.parent.name == "artifacts" and path.stem == variant.stem


def write_c_array(model: Path, folder: Path, row_id: str, device: str, ops: list[str],
                  constants: list[tuple[str, int, str]], purpose: str) -> dict:
    """``folder/<row>.cc`` and ``.h``: the model ``model`` as an aligned C array, ``constants``
    (``(name suffix, value, comment)``: ``X_<suffix>`` as a ``constexpr size_t``) and the op
    resolver of ``ops`` (the model's operator types).

    Returns the row's ``c_array`` field: the files relative to the run directory (``folder``'s
    parent), the model's symbol and the op resolver."""
    data = model.read_bytes()
    stem, name = file_stem(row_id), c_identifier(row_id)
    guard = f"EDGEKIT_{name.upper()}_H_"
    header, source = folder / f"{stem}.h", folder / f"{stem}.cc"
    resolver = op_resolver(ops)
    about = f"{model.name} for {device}, written by edgekit"
    lines = [*_comment(f"{about}: {purpose}"), f"#ifndef {guard}", f"#define {guard}", "", "#include <cstddef>", "#include <cstdint>", "",
             '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"', ""]
    for suffix, value, comment in constants:
        lines += [line for part in comment.splitlines() for line in _comment(part)]
        lines += [f"constexpr size_t {name}_{suffix} = {int(value)};", ""]
    lines += [f"extern const unsigned char {name}_model[];", f"extern const unsigned int {name}_model_len;", ""]
    kinds = ", ".join(dict.fromkeys(ops)) or "none"
    lines += _comment(f"Its {len(dict.fromkeys(ops))} operator type(s), each registered once: {kinds}.")
    if resolver["unknown"]:
        lines += _comment(f"No Add method known for {', '.join(resolver['unknown'])}: TFLite Micro has no kernel for "
                          "it; register your own with AddCustom or AddBuiltin and add 1 to N per operator.")
    lines += [
        f"using {name}_op_resolver = {resolver['type']};", "",
        "// Registers them: declare the resolver once and pass it to the interpreter with the model, e.g.",
        f"//   static {name}_op_resolver resolver;",
        f"//   if ({name}_register_ops(resolver) != kTfLiteOk) {{ /* report the error */ }}",
        f"//   static tflite::MicroInterpreter interpreter(tflite::GetModel({name}_model), resolver, arena, sizeof(arena));",
        f"inline TfLiteStatus {name}_register_ops({name}_op_resolver& resolver) {{",
        *[f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;" for method in resolver["adds"]],
        "  return kTfLiteOk;", "}", "", f"#endif  // {guard}", ""]
    header.write_text("\n".join(lines))
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    source.write_text(
        "\n".join(_comment(f"{about} ({len(data)} bytes).")) + f"\n#include \"{header.name}\"\n\n"
        f"alignas(16) const unsigned char {name}_model[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
        f"const unsigned int {name}_model_len = {len(data)};\n")
    run_dir = folder.parent
    return {"source": str(source.relative_to(run_dir)), "header": str(header.relative_to(run_dir)),
            "symbol": f"{name}_model",
            "op_resolver": {**resolver, "register": f"{name}_register_ops", "class": f"{name}_op_resolver"}}
