"""The shape of a results file, checked once on read for every reader of it.

``edgekit check``, ``compare``, ``report``, ``verify``, ``table``, ``edgekit.load`` and
``edgekit.check`` all read results files through ``edgekit.results.read.load_results`` (and
``edgekit.check.baseline.load_baseline``), which calls ``check_shape`` here: every field any of
them reads has the type its readers expect, or the file is refused in one line that names the
field (exit 2). A
results file from another machine, an old edgekit or a hand edit then never meets a reader as
a traceback. Numbers that cannot be measurements (NaN, inf, a latency <= 0) are a separate
question: they are read, and ``edgekit check`` fails their budgets.

The spec names the fields edgekit writes (``edgekit.report.rows.make_row`` and
``edgekit.report.results``); fields it does not name pass as they are (the contract grows by
adding fields), and ``null`` is accepted wherever a value may be missing. Standard library only.
"""

from __future__ import annotations

import math
import re
import reprlib
import sys
from typing import Any

from edgekit.errors import InputError

# A spec is one of:
#   "number" (int or float, not bool, within float range), "measure" (any JSON number: a metric or
#   latency past float range reads as inf, which `edgekit check` fails), "integer" (64-bit), "text",
#   "flag" (bool), "object" (any JSON object),
#   "scalar" (text or number), "any";
#   a dict: an object whose listed keys have those specs (other keys pass);
#   ("list", spec): a list of spec; ("map", spec): an object whose every value is spec;
#   ("pair", spec): a list of exactly two spec.
# A key's value or a map's value may be null, except the keys in NOT_NULL; a list's items may not;
# the keys in PRESENT must be there (null or not).

ENVIRONMENT = {"cpu": "text", "isa": ("list", "text"), "cores": "integer", "machine": "text", "os": "text",
               "python": "text", "packages": ("map", "text")}
OP_TYPE = {"type": "text", "share": "number", "count": "integer", "accelerated": "flag", "ms": "number"}
PROFILE = {"top_op_types": ("list", OP_TYPE), "partitions": "integer", "ops": "integer",
           "not_accelerated": {"ops": "integer", "share": "number", "types": ("list", "text"), "top": ("list", "any")},
           "op_counts": ("map", "integer"), "total_ms": "number", "unprofiled_ms": "number", "file": "text",
           "how": "text", "runtime": "text", "qdq": ("map", "number")}
LAYER = {"layer": "scalar", "added_db": "number", "snr_db": "number", "local_snr_db": "number", "nrmse": "number"}
QUANTIZATION = {"scale": "number", "zero_point": "number"}
STEP = {"step": "text", "layers": ("list", {"layer": "scalar", "class": "scalar"}), "size": ("list", "any")}
TENSOR = {"name": "scalar", "dtype": "text", "shape": "any", "layout": "text", "quantization": QUANTIZATION,
          "value_range": {"min": "number", "max": "number", "of": "text"}, "preprocessing": ("list", STEP),
          "decode": "text", "meaning": "text"}
CONTRACT = {"file": "text", "row": "text", "artifact": "text", "inputs": ("list", TENSOR), "outputs": ("list", TENSOR),
            "runtime": "object", "metrics": "object"}
IO = {"inputs": ("list", {"name": "scalar", "dtype": "text", "quantization": QUANTIZATION}),
      "outputs": ("list", {"name": "scalar", "dtype": "text", "quantization": QUANTIZATION})}
CLOCKS = {"freq_mhz": ("map", ("pair", "number")), "freq_change": "number", "governors": ("list", "text"),
          "temp_c": ("pair", "number"), "waits": ("list", {"limit_c": "number"}), "waited_s": "number"}
ROW = {
    "id": "text", "status": "text", "model": "text", "parent": "text", "format": "text", "precision": "text",
    "target": "text", "reason": "text", "path": "text", "size_bytes": "integer", "gzip_bytes": "integer",
    "weights": {"tensors": "integer", "parameters": "integer", "sparsity": "number", "max_unique_per_tensor": "integer"},
    "metrics": ("map", "measure"), "delta": ("map", "measure"), "parity": ("map", "number"),
    "latency_ms": ("map", "measure"), "speedup_vs_baseline": "number", "speedup_vs_baseline_ci95": ("pair", "number"),
    "vs_fp32_same_runtime": "number", "vs_fp32_same_runtime_ci95": ("pair", "number"), "runtime": "text",
    "settings": {"kept_float": ("list", "text"), "mixed": "object", "inference_precision": "text",
                 "cpu_pinning": "flag", "test_mode": "flag", "threads": "integer"},
    "notes": ("list", "text"),
    "timing": {"rounds": "integer", "round_p50_ms": ("list", "number"), "spread": "number", "robust_spread": "number",
               "interleaved": "flag", "p50_ci95_ms": ("pair", "number"), "unstable": "flag", "clocks": CLOCKS},
    "profile": PROFILE, "profile_error": "text",
    "layer_error": {"worst": ("list", LAYER), "layers_measured": "integer", "layers_matched": "integer",
                    "layers_total": "integer", "how": "text", "metric": "text"},
    "memory": {"peak_bytes": "integer", "load_bytes": "integer", "how": "text"},
    "memory_limits": ("list", {"budget": "text", "value": "number", "limit": "number", "what": "text"}),
    "harness": {"call_ms": "number", "runtime_only_ms": "number", "harness_ms": "number", "runs": "integer",
                "how": "text", "latency_ms_is": "text"},
    "contract": CONTRACT, "io": IO, "suspect": "flag", "measured_at": "number", "device": "text",
    "retries": ("list", "object"),
}
RESULTS = {
    "edgekit_version": "text", "recipe": {"name": "text", "path": "text", "sha256": "text"},
    "environment": ENVIRONMENT, "task": "text", "primary_metric": "text", "higher_is_better": "flag",
    "data": {"source": "text", "splits": ("map", "integer"), "input_preprocessing": {"inputs": ("list", {"warning": "text"})}},
    "sanity": {"metric": "text", "suspect": "flag", "reason": "text", "baseline": "number", "floor": "number",
               "chance": "number", "baseline_ci95": ("pair", "number"), "majority_class": {"share": "number"}},
    "loss_flags": {"tolerance": ("map", "number"), "reference_row": "text", "rows": ("list", "text"), "how": "text"},
    "gate_metric": "text", "retimed": ("list", "object"),
    "benchmark": {"warmup": "integer", "runs": "integer", "threads": "integer", "inputs": "integer",
                  "rounds": "integer", "min_time_s": "number", "profile": "flag", "unstable_spread": "number"},
    "baseline": "text", "speedup_baseline": "text",
    "latency_by_target": ("map", ("map", {"status": "text", "p50": "number", "p90": "number", "runtime": "text"})),
    "targets": ("map", {"fleet": {"members": ("map", {"jobs": "number"})}}),
    "model": {"source": "text", "parameters": "integer"}, "train": "object", "models": ("list", "object"),
    "not_produced": ("list", {"model": "text", "format": "text", "precision": "text", "reason": "text"}),
    "reused": ("map", ("list", "text")), "build_seconds": "number", "tasks": ("list", "object"),
    "stages": ("map", "number"), "command": "text", "interrupted": "flag",
    "rows": ("list", ROW),
}
#: keys that must be there and not null (a row's other keys are filled in when missing: ROW_DEFAULTS)
NOT_NULL = {
    "": ("recipe", "baseline", "primary_metric", "rows"),
    "rows[]": ("id", "status", "metrics", "delta", "notes"),
    "rows[].profile.top_op_types[]": ("type",),
    "rows[].layer_error.worst[]": ("layer",),
    "rows[].contract": ("inputs", "outputs", "runtime"),
    **{f"rows[].contract.{side}[]": ("name", "dtype") for side in ("inputs", "outputs")},
    **{f"rows[].contract.{side}[].quantization": ("scale", "zero_point") for side in ("inputs", "outputs")},
    **{f"rows[].contract.{side}[].value_range": ("min", "max") for side in ("inputs", "outputs")},
    "rows[].contract.inputs[].preprocessing[]": ("step",),
    "rows[].contract.inputs[].preprocessing[].layers[]": ("layer", "class"),
}
#: the row maps of "measure" values: an integer past float range becomes inf there on read
MEASURES = ("metrics", "delta", "latency_ms")
#: the row keys readers index (``row["format"]``), each filled in with "none" when a row lacks it:
#: edgekit writes them all (``make_row``), older or hand-made files may not
ROW_DEFAULTS = {"model": None, "format": None, "precision": None, "target": None, "reason": None, "path": None,
                "size_bytes": None, "metrics": {}, "delta": {}, "latency_ms": None, "speedup_vs_baseline": None,
                "runtime": None, "notes": []}

_FLOAT_MAX = int(sys.float_info.max)
#: what a top-level field is, where its type alone says too little
_MEANING = {"baseline": "a string (a row id or metric name)", "primary_metric": "a string (a row id or metric name)"}
_PLURAL = {"number": "numbers", "measure": "numbers", "integer": "integers", "text": "strings", "flag": "true/false values",
           "object": "objects", "scalar": "strings or numbers", "any": "values"}
_NUMBER_NAMES = {"number": "a number", "measure": "a number", "integer": "an integer", "text": "a string", "flag": "true or false",
                 "object": "an object", "scalar": "a string or a number", "any": "anything"}


def check_shape(doc: Any, path: Any, what: str = "results") -> dict:
    """Check a parsed results file against the spec; fill in ROW_DEFAULTS where a row lacks
    them and read integers past float range in MEASURES as inf.

    Returns:
        ``doc`` (the same dict, its rows completed).

    Raises:
        InputError: one line naming the file, the first field that does not fit, what was
            expected and what was received.
    """
    if not isinstance(doc, dict):
        raise InputError(f"{path}: {what}: expected a JSON object (an edgekit results.json), received {_shown(doc)}")
    rows = doc.get("rows")
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict):
            for key, default in ROW_DEFAULTS.items():
                row.setdefault(key, type(default)() if isinstance(default, (list, dict)) else default)
    missing = [key for key in NOT_NULL[""] if key not in doc]
    if missing:
        raise InputError(f"{path}: {what}: expected an edgekit results.json; missing key(s): {', '.join(missing)}; "
                         "pass RUN_DIR/results.json or a file from `edgekit baseline save`")
    problem = _problem(doc, RESULTS, "")
    if problem is None and not rows:
        problem = "rows: expected a non-empty list of rows, received []"
    if problem is not None:
        # a row is named by its id too: "rows[3] (tflite-int8@cpu): latency_ms: ..."
        problem = re.sub(r"^rows\[(\d+)\](\.|:)", lambda m: _row_label(rows, int(m.group(1))) + ":" + (" " if m.group(2) == "." else ""),
                         problem)
        raise InputError(f"{path}: {what}: {problem}; expected a file written by edgekit "
                         "(RUN_DIR/results.json or one from `edgekit baseline save`): was it edited by hand?")
    for row in rows:
        for key in MEASURES:
            values = row.get(key) or {}
            for name, value in values.items():
                if isinstance(value, int) and not _fits(value, "number"):
                    values[name] = math.inf if value > 0 else -math.inf  # as value_problems reads it
    return doc


def _problem(value: Any, spec: Any, at: str) -> str | None:
    """What in ``value`` does not fit ``spec``, as "field: expected ..., received ...", or None."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return _mismatch(at, "an object", value)
        for key in NOT_NULL.get(_generic(at), ()):
            if value.get(key) is None:
                return f"{_join(at, key)}: expected {_describe(spec.get(key, 'any'))}, received " + (
                    "null" if key in value else "nothing (the key is missing)")
        for key, inner in spec.items():
            if value.get(key) is not None and (found := _problem(value[key], inner, _join(at, key))):
                return found
        return None
    if isinstance(spec, tuple):
        kind, inner = spec
        if kind == "map":
            plain = isinstance(inner, str)  # an object of numbers: named as a whole, as the readers see it
            if not isinstance(value, dict) or (plain and not all(v is None or _fits(v, inner) for v in value.values())):
                return _mismatch(at, f"an object of {_PLURAL.get(inner, 'values')}" if plain else "an object", value)
            items = value.items()
        else:
            if not isinstance(value, list):
                return _mismatch(at, f"a list of {_describe(inner)}", value)
            if kind == "pair" and len(value) != 2:
                return _mismatch(at, f"a list of two {_describe(inner)}", value)
            items = enumerate(value)
        for key, item in items:
            where = f"{at}[{key}]" if kind != "map" else _join(at, str(key))
            if item is None:
                if kind == "map":
                    continue  # readers take a map's values with .get(): a null is a missing value
                return _mismatch(where, _describe(inner), item)
            if found := _problem(item, inner, where):
                return found
        return None
    return None if _fits(value, spec) else _mismatch(at, _MEANING.get(at) or _describe(spec), value)


def _row_label(rows: list, index: int) -> str:
    row = rows[index] if 0 <= index < len(rows) else None
    name = row.get("id") if isinstance(row, dict) else None
    return f"rows[{index}] ({name})" if isinstance(name, str) else f"rows[{index}]"


def _fits(value: Any, kind: str) -> bool:
    measure = isinstance(value, (int, float)) and not isinstance(value, bool)
    # JSON allows any integer; readers compute with them as floats (and sizes within 64 bits)
    number = measure and (isinstance(value, float) or -_FLOAT_MAX <= value <= _FLOAT_MAX)
    integer = measure and isinstance(value, int) and -(2**63) <= value < 2**63
    return {"number": number, "measure": measure, "integer": integer, "text": isinstance(value, str),
            "flag": isinstance(value, bool), "object": isinstance(value, dict), "scalar": number or isinstance(value, str),
            "any": True}[kind]


def _describe(spec: Any) -> str:
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, tuple):
        return {"map": "an object", "list": "a list", "pair": "a list of two"}[spec[0]]
    return _NUMBER_NAMES[spec]


def _mismatch(at: str, expected: str, value: Any) -> str:
    return f"{at or 'the file'}: expected {expected}, received {_shown(value)}"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 40, 40, 4, 4


def _shown(value: Any) -> str:
    """A short picture of a value of any size or depth (reprlib bounds both)."""
    return "null" if value is None else _REPR.repr(value)


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _generic(at: str) -> str:
    """The NOT_NULL / PRESENT key of a path: ``rows[3].profile.top_op_types[0]`` -> ``rows[].profile.top_op_types[]``."""
    return re.sub(r"\[\d+\]", "[]", at)
