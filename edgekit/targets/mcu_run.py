"""The TFLite Micro run of one artifact, in a process of its own (``python -m edgekit.targets.mcu_run
FOLDER``): the mcu target (edgekit.targets.mcu) starts it, so a model that makes the interpreter
abort fails its own row and nothing else.

FOLDER holds ``job.json`` (the model's path and the timing loop's settings), ``samples.npy``
(the timed inputs) and, optionally, ``eval.npy`` (the test split). The run writes
``result.json`` there and, when it evaluated, ``outputs.npy`` (TFLM's outputs, float32).

What it finds, in order:

1. op coverage: the model's op types; an interpreter that refuses the model names what it lacks
   (``Didn't find op for builtin opcode 'X'``, a dynamic tensor), and ops the wheel has no
   kernel for are named too, so one row lists every op to replace, not only the first;
2. the tensor arena: the total TFLM's RecordingMicroAllocator reports, then the smallest arena
   (in 16-byte steps) that really allocates and invokes: the report leaves out the temporary
   memory kernels take while they prepare (on a small CNN here: reported 2,144 bytes, needed 2,416);
3. the test split's outputs in that smallest arena, and LiteRT's outputs of the same file, to
   say how far TFLM's int8 kernels agree with LiteRT's;
4. latency: edgekit's timing loop (``edgekit.bench.timing.time_rounds``) around set_input + invoke +
   get_output in the interpreter on this machine: host time, not the device's.

Only numpy, tflite-micro and the LiteRT session are imported: no TensorFlow.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgekit.runtimes import (
    TensorInfo,
    as_samples,
    decoded,
    dequantize_output,
    field_names,
    plain_name,
    quantize_input,
    split_fields,
)

#: arena sizes tried in steps of this (TFLM aligns its allocations to 16 bytes)
ALIGN = 16
#: the first, generous arena: room for any model these targets take
MIN_FIRST_ARENA = 4 << 20


@contextmanager
def captured_stderr():
    """What the C++ side writes to stderr (file descriptor 2) while the block runs: TFLM reports
    missing ops and its allocations there, not through Python."""
    sys.stderr.flush()
    saved = os.dup(2)
    box: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace"))


def model_ops(data: bytes) -> list[str]:
    """The builtin op types of a .tflite flatbuffer, in order of first use (custom ops by name)."""
    from tflite_micro.python.tflite_micro import runtime
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = runtime.convert_bytearray_to_object(bytearray(data))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops: list[str] = []
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = runtime.get_builtin_code_from_operator_code(code)
            name = names.get(builtin, str(builtin))
            if name == "CUSTOM" and code.customCode:
                name = f"CUSTOM:{code.customCode.decode(errors='replace')}"
            if name not in ops:
                ops.append(name)
    return ops


def kernel_names() -> set[str]:
    """Op types the installed wheel registers a kernel for (its ``Register_X`` symbols); empty
    when they cannot be read (a stripped build): the interpreter's own refusal then decides."""
    from tflite_micro.python.tflite_micro import _runtime

    try:
        blob = Path(_runtime.__file__).read_bytes()
    except OSError:
        return set()
    return {m.decode() for m in re.findall(rb"Register_([A-Z][A-Z0-9_]*?)(?:_INT8|_INT16)?Ev", blob)}


def refusal(stderr: str, ops: list[str], kernels: set[str]) -> dict:
    """Why TFLM refused a model: the ops it lacks (named by it, or missing from its kernels),
    dynamic tensors, or its last words."""
    missing = re.findall(r"Didn't find op for builtin opcode '(\w+)'", stderr)
    missing += [op for op in ops if kernels and op not in kernels and op not in missing]
    dynamic = sorted(set(re.findall(r"Op#\d+ \((\w+)\) of subgraph \d+ has dynamic tensor", stderr)))
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return {"missing_ops": missing, "dynamic_ops": dynamic, "last": lines[-1] if lines else ""}


def arena_total(stderr: str) -> int | None:
    found = re.search(r"Arena allocation total (\d+) bytes", stderr)
    return int(found.group(1)) if found else None


def io_names(data: bytes) -> tuple[list[str], list[str]]:
    """The names of a .tflite model's inputs and outputs, in the subgraph's order (TFLM's input
    and output indices): its signature's keys where it has one (the Keras names), else the
    tensors' own names. TFLM's details carry no names."""
    from tflite_micro.python.tflite_micro import runtime

    model = runtime.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    inputs = [int(i) for i in graph.inputs]
    outputs = [int(i) for i in graph.outputs]

    def text(name) -> str:
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name)

    names = {i: plain_name(text(graph.tensors[i].name)) for i in inputs + outputs}
    for signature in (model.signatureDefs or [])[:1]:
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            names[int(tensor_map.tensorIndex)] = text(tensor_map.name)
    return [names[i] for i in inputs], [names[i] for i in outputs]


class TflmSession:
    """A TFLM interpreter with the session interface of edgekit's runtimes (``prepare``, ``run``,
    ``decode``), quantizing and dequantizing as the LiteRT session does; a model of several
    inputs or outputs takes a structured batch and decodes to one, matched by name."""

    def __init__(self, data: bytes, arena: int):
        from tflite_micro.python.tflite_micro import runtime

        self.interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena)
        in_names, out_names = io_names(data)
        self._in = [self.interpreter.get_input_details(k) for k in range(len(in_names))]
        self._out = [self.interpreter.get_output_details(k) for k in range(len(out_names))]
        self.input, self.output = self._in[0], self._out[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        self.inputs = [TensorInfo(n, d["dtype"], d["shape"], *(self._quantization(d) or (None, None)))
                       for n, d in zip(in_names, self._in)]
        self.outputs = [TensorInfo(n, d["dtype"], d["shape"], *(self._quantization(d) or (None, None)))
                        for n, d in zip(out_names, self._out)]

    def zeros(self):
        """A prepared feed of zeros (every input in its own dtype)."""
        arrays = tuple(np.zeros(tuple(int(s) for s in d["shape"]), d["dtype"]) for d in self._in)
        return arrays[0] if len(arrays) == 1 and len(self._out) == 1 else arrays

    @staticmethod
    def _quantization(details: dict) -> tuple[float, int] | None:
        q = details.get("quantization_parameters") or {}
        scales, zeros = q.get("scales"), q.get("zero_points")
        if scales is None or len(scales) == 0:
            return None
        return float(scales[0]), int(zeros[0]) if len(zeros) else 0

    def prepare(self, x: np.ndarray):
        if len(self._in) == 1 and len(self._out) == 1:
            if field_names(x) is not None:
                (x,) = split_fields(x, self.inputs)
            return quantize_input(np.asarray(x).reshape(self.input["shape"]), self.input["dtype"],
                                  *(self._quantization(self.input) or (0.0, 0)))
        return tuple(quantize_input(np.asarray(a).reshape(d["shape"]), d["dtype"], *(self._quantization(d) or (0.0, 0)))
                     for a, d in zip(split_fields(x, self.inputs), self._in))

    def run(self, feed):
        if not isinstance(feed, tuple):
            self.interpreter.set_input(feed, 0)
            self.interpreter.invoke()
            return self.interpreter.get_output(0)
        for k, array in enumerate(feed):
            self.interpreter.set_input(array, k)
        self.interpreter.invoke()
        return tuple(self.interpreter.get_output(k) for k in range(len(self._out)))

    def decode(self, raw):
        if not isinstance(raw, tuple):
            return dequantize_output(np.asarray(raw), *(self._quantization(self.output) or (0.0, 0)))
        return decoded(self.outputs, [dequantize_output(np.asarray(r), *(self._quantization(d) or (0.0, 0)))
                                      for r, d in zip(raw, self._out)])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self.decode(self.run(self.prepare(x[i:i + 1]))) for i in range(len(x))])


def _allocates(data: bytes, arena: int) -> bool:
    """Whether the model allocates and invokes once in an arena of ``arena`` bytes, tried in a
    forked child: just short of the smallest arena TFLM can crash instead of failing cleanly
    (a small CNN here: 4,336 bytes failed, 4,368 segfaulted, 4,400 ran), so a crash is a miss."""
    if not hasattr(os, "fork"):
        return _allocates_here(data, arena)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: its verdict is its exit status, whatever happens
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)  # a too small arena makes TFLM print its shortfall: not ours to show
            os._exit(0 if _allocates_here(data, arena) else 1)
        except BaseException:  # noqa: BLE001 - the child must never return into the caller's code
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _allocates_here(data: bytes, arena: int) -> bool:
    try:
        with captured_stderr():
            session = TflmSession(data, arena)
            session.run(session.zeros())
    except RuntimeError:
        return False
    return True


def smallest_arena(data: bytes, reported: int, first: int) -> int:
    """The smallest arena (a multiple of ALIGN) at or above ``reported`` that allocates, found by
    doubling steps up from ``reported`` and then halving between the last miss and the first fit."""
    lo = -(-reported // ALIGN) * ALIGN
    if _allocates(data, lo):
        return lo
    step, miss = ALIGN, lo
    while True:
        hi = min(lo + step, first)
        if _allocates(data, hi) or hi >= first:
            break
        miss, step = hi, step * 2
    while hi - miss > ALIGN:
        mid = (miss + hi) // 2 // ALIGN * ALIGN
        if _allocates(data, mid):
            hi = mid
        else:
            miss = mid
    return hi


def agreement(tflm: np.ndarray, litert: np.ndarray, output_scale: float | None, classes: bool) -> dict:
    """How TFLM's outputs compare with LiteRT's for the same file and inputs; ``classes``: the
    output is one score per class, so top-1 agreement means something."""
    a, b = _flat(tflm), _flat(litert, tflm.dtype.names)
    diff = np.abs(a - b)
    out = {"samples": len(a), "identical": float(np.mean(np.all(diff == 0, axis=1))),
           "max_abs_diff": float(diff.max()) if diff.size else 0.0}
    if output_scale:
        out["max_diff_steps"] = round(out["max_abs_diff"] / output_scale)  # in units of the int8 output step
    if classes:
        out["top1"] = float(np.mean(a.argmax(1) == b.argmax(1)))
    return out


def _flat(outputs: np.ndarray, names=None) -> np.ndarray:
    """One row of values per sample: every output of several side by side (in the order of
    ``names``, another runtime's: the order of outputs differs between runtimes)."""
    if outputs.dtype.names:
        return np.concatenate([outputs[n].reshape(len(outputs), -1) for n in names or outputs.dtype.names], axis=1)
    return outputs.reshape(len(outputs), -1)


def run(folder: Path) -> dict:
    """The whole run of one job folder; returns what result.json holds."""
    from tflite_micro.python.tflite_micro import _version

    job = json.loads((folder / "job.json").read_text())
    data = Path(job["model"]).read_bytes()
    try:
        ops = model_ops(data)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails its row with the parser's words
        return {"ops": [], "flash_bytes": len(data), "error": f"not a readable TFLite flatbuffer ({type(exc).__name__}: {exc})"}
    kernels = kernel_names()
    first = max(MIN_FIRST_ARENA, 10 * len(data))
    base = {"ops": ops, "flash_bytes": len(data), "version": getattr(_version, "__version__", "unknown")}
    with captured_stderr() as said:
        try:
            session = TflmSession(data, first)
            session.run(session.zeros())
            session.interpreter.print_allocations()
            error = None
        except RuntimeError as exc:
            error = str(exc)
    if error is not None:
        return {**base, "refused": refusal(said[0], ops, kernels), "error": error}
    reported = arena_total(said[0])
    if reported is None:
        return {**base, "error": "TFLite Micro printed no arena allocation report"}
    arena = smallest_arena(data, reported, first)
    session = TflmSession(data, arena)
    out = {**base, "arena_bytes": arena, "arena_reported_bytes": reported,
           "input": {"dtype": np.dtype(session.input["dtype"]).name, "shape": list(session.input_shape)},
           "output_dtype": np.dtype(session.output["dtype"]).name,
           "io": {"inputs": [t.to_dict() for t in session.inputs], "outputs": [t.to_dict() for t in session.outputs]}}
    if (folder / "eval.npy").exists():
        x = as_samples(np.load(folder / "eval.npy"))
        outputs = session.predict(x)
        np.save(folder / "outputs.npy", outputs)
        try:
            from edgekit.runtimes import litert

            reference = litert.open_session(Path(job["model"]), 1)
            q = TflmSession._quantization(session.output)
            # one score per class: a vector of k > 1 values that is not the input again (an autoencoder's)
            width = int(np.prod(outputs.shape[1:]))
            classes = not outputs.dtype.names and outputs.ndim == 2 and 1 < width != int(np.prod(session.input_shape[1:]))
            out["agreement"] = {"reference": reference.runtime, **agreement(outputs, reference.predict(x),
                                                                            q[0] if q else None, classes)}
        except Exception as exc:  # noqa: BLE001 - a missing LiteRT costs the comparison, not the row
            out["agreement"] = {"error": f"LiteRT could not run the same file: {type(exc).__name__}: {exc}"}
    from edgekit.bench.timing import time_rounds

    samples = list(as_samples(np.load(folder / "samples.npy")))
    (per_round,) = time_rounds([session], samples, job["warmup"], job["runs"], job["min_time_s"],
                               rounds=job.get("rounds", 1), seed=job.get("seed", 0))
    out.update(latencies_ms=[t for r in per_round for t in r], rounds_ms=per_round)
    return out


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    result = run(folder)
    (folder / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    from edgekit import lifeline

    lifeline.hold()  # started by a build (targets/mcu.py): never outlive it
    sys.exit(main(sys.argv[1:]))
