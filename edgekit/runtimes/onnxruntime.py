"""ONNX Runtime, CPU execution provider (or CUDA, for the gpu target).

Shipped to devices as it is: stdlib + numpy + onnxruntime only (see edgekit.runtimes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes import (
    Session,
    TensorInfo,
    cast_input,
    decoded,
    field_names,
    one_sample_batch,
    package_version,
    split_fields,
    zeros_batch,
)

#: ONNXOptions.graph_optimization_level's default (edgekit.formats); repeated here because
#: this module is shipped to devices, where pydantic and the format table are not.
DEFAULT_OPTIMIZATION = "ORT_ENABLE_ALL"

# ONNX tensor element types -> numpy, for the input cast in prepare.
DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


class OnnxRuntimeSession(Session):
    # IOBinding skips run()'s per-call feed/fetch conversion. Measured on the digits CNN (fp32,
    # p50): run(dict) 9.18 us, IOBinding + copy_outputs_to_cpu 7.58, IOBinding with the output
    # bound to a buffer allocated once 6.79, the same through the C++ binding object 6.51.
    timed_call = "run_with_iobinding (input and output bound in prepare)"

    def __init__(self, path: Path, threads: int, options: dict | None = None, providers: list[str] | None = None,
                 profile_prefix: str | None = None):
        # {input name: shape}: free dimensions fixed by the caller (edgekit bench --shape)
        input_shapes = dict((options or {}).get("input_shapes") or {})
        import onnxruntime as ort

        # The recipe validated the options on the host (ONNXOptions); only this one matters here.
        level = (options or {}).get("graph_optimization_level") or DEFAULT_OPTIMIZATION
        if not hasattr(ort.GraphOptimizationLevel, str(level)):
            raise ValueError("graph_optimization_level: expected ORT_DISABLE_ALL, ORT_ENABLE_BASIC, "
                             f"ORT_ENABLE_EXTENDED or ORT_ENABLE_ALL, received {level!r}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        # Batch 1 of a small sequential CNN has no parallel branches worth a second pool.
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        if profile_prefix:  # profile_ops only: never a timed session
            so.enable_profiling = True
            so.profile_file_prefix = str(profile_prefix)
        self.session = ort.InferenceSession(str(path), so, providers=list(providers or ["CPUExecutionProvider"]))
        self._ins, self._outs = self.session.get_inputs(), self.session.get_outputs()
        self.input = self._ins[0]
        output = self._outs[0]
        self.output_name = output.name
        self.inputs = [TensorInfo(i.name, DTYPES.get(i.type, np.float32), input_shapes.get(i.name) or _runs_at(i.shape, self._ins))
                       for i in self._ins]
        self.outputs = [TensorInfo(o.name, DTYPES.get(o.type, np.float32), _runs_at(o.shape, self._ins)) for o in self._outs]
        # One output buffer per output for every binding, allocated once: ORT writes into it
        # instead of allocating a result per run. Only where every output's shape is known at
        # batch 1 (dynamic dims other than the batch: ORT allocates, and copy_outputs_to_cpu reads).
        buffers = [_buffer(o) for o in self._outs]
        self._buffers = tuple(buffers) if all(b is not None for b in buffers) else None
        self._out = buffers[0] if self._buffers is not None else None
        # The C++ session and binding objects under the Python wrappers (what their
        # run_with_iobinding calls), saving a Python call per run; the wrapper where absent.
        self._run = getattr(getattr(self.session, "_sess", None), "run_with_iobinding", None)
        self.dtype = DTYPES.get(self.input.type, np.float32)
        self._dtypes = [DTYPES.get(i.type, np.float32) for i in self._ins]
        # Every run here is batch 1: a free batch dim becomes 1; an input with other free dims
        # takes each sample's own shape (None: not reshaped).
        self._shapes = [_batch1(info.shape) for info in self.inputs]
        self._reshape = self._shapes[0]
        self.input_shape = tuple(d or 1 for d in self.inputs[0].shape)
        if len(self._ins) > 1 or len(self._outs) > 1:
            # several inputs or outputs: every one bound; one of each keeps the class's methods
            self.prepare, self.run, self.decode = self._prepare_many, self._run_many, self._decode_many
        self.runtime = "onnxruntime {}".format(package_version("onnxruntime", "onnxruntime-gpu") or ort.__version__)
        self.settings = {
            "threads": threads,
            "inter_op_threads": 1,
            "execution_mode": "sequential",
            "graph_optimization_level": level,
            "providers": self.session.get_providers(),
        }

    def prepare(self, x: np.ndarray) -> tuple:
        """(binding, C++ binding or None, input array): the input bound in place, zero-copy."""
        # The input's own dtype: float32, or int32 for a model over token ids.
        if field_names(x) is not None:  # a structured batch of one field: this model's one input
            (x,) = split_fields(x, self.inputs)
        array = cast_input(x if self._reshape is None else x.reshape(self._reshape), self.dtype)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input.name, array)
        if self._out is not None:
            out = self._out
            binding.bind_output(self.output_name, "cpu", 0, out.dtype.type, list(out.shape), out.ctypes.data)
        else:
            binding.bind_output(self.output_name, "cpu")
        native = getattr(binding, "_iobinding", None) if self._run is not None else None
        return binding, native, array  # the array rides along: the binding points into its memory

    def run(self, feed: tuple) -> np.ndarray:
        """One inference; with a preallocated output, the result is that buffer, valid until
        the next run (``decode`` copies it)."""
        if feed[1] is not None:
            self._run(feed[1], None)
        else:
            self.session.run_with_iobinding(feed[0])
        if self._out is not None:
            return self._out
        return feed[0].copy_outputs_to_cpu()[0]

    def decode(self, raw: np.ndarray) -> np.ndarray:
        return np.array(raw, dtype=np.float32)  # a copy: raw may be the reused output buffer

    def _prepare_many(self, x: np.ndarray) -> tuple:
        arrays = [cast_input(np.asarray(a) if shape is None else np.asarray(a).reshape(shape), dtype)
                  for a, shape, dtype in zip(split_fields(x, self.inputs), self._shapes, self._dtypes)]
        binding = self.session.io_binding()
        for info, array in zip(self._ins, arrays):
            binding.bind_cpu_input(info.name, array)
        for k, out in enumerate(self._outs):
            if self._buffers is not None:
                buf = self._buffers[k]
                binding.bind_output(out.name, "cpu", 0, buf.dtype.type, list(buf.shape), buf.ctypes.data)
            else:
                binding.bind_output(out.name, "cpu")
        native = getattr(binding, "_iobinding", None) if self._run is not None else None
        return binding, native, arrays

    def _run_many(self, feed: tuple) -> tuple:
        if feed[1] is not None:
            self._run(feed[1], None)
        else:
            self.session.run_with_iobinding(feed[0])
        if self._buffers is not None:
            return self._buffers
        return tuple(feed[0].copy_outputs_to_cpu())

    def _decode_many(self, raw: tuple) -> np.ndarray:
        return decoded(self.outputs, raw)

    def runtime_only(self, feed: tuple):
        # onnxruntime has no clock of its own per run (profiling has one, at a per-node cost):
        # the closest is the C++ call with input and output bound, which is all run() does
        # when the output buffer is preallocated; else run() also copies the output out.
        if feed[1] is not None:
            run, native = self._run, feed[1]
            return (lambda: run(native, None)), "bare C++ run_with_iobinding, input and output bound"
        binding, session = feed[0], self.session
        return (lambda: session.run_with_iobinding(binding)), "run_with_iobinding alone, without reading the output"


def _buffer(output) -> np.ndarray | None:
    """A preallocated batch-1 buffer for an output whose shape is known but for the batch, else None."""
    dims = list(output.shape or [])
    if output.type not in DTYPES or not dims or not all(isinstance(d, int) for d in dims[1:]):
        return None
    return np.empty([d if isinstance(d, int) else 1 for d in dims], DTYPES[output.type])


def _runs_at(shape, inputs) -> list:
    """A graph shape as it runs here: a symbolic dimension named like an input's first (batch)
    axis is 1 wherever it stands (every run here is batch 1; a recurrent state's [2, batch, 128]),
    except on the first axis, which stays free (None)."""
    batch = {d for i in inputs for d in (i.shape or [])[:1] if isinstance(d, str)}
    return [d if isinstance(d, int) else 1 if (k and d in batch) else None for k, d in enumerate(shape or [])]


def _batch1(shape) -> tuple | None:
    """The batch-1 shape to reshape a sample to, or None where a dimension other than the batch is free."""
    if any(d is None for d in shape[1:]):
        return None
    return tuple(d if d is not None else 1 for d in shape)


def user_settings(settings: dict) -> dict:
    """What a user sets to run an .onnx file as a row ran it (its ``settings``), in onnxruntime's
    own terms: the input contract's ``runtime`` (``edgekit.report.contract``)."""
    return {"call": "onnxruntime.InferenceSession(PATH, sess_options, providers=PROVIDERS)",
            "session_options": {
                "intra_op_num_threads": settings.get("threads", 1),
                "inter_op_num_threads": settings.get("inter_op_threads", 1),
                "execution_mode": "ORT_SEQUENTIAL" if settings.get("execution_mode", "sequential") == "sequential"
                else "ORT_PARALLEL",
                "graph_optimization_level": settings.get("graph_optimization_level") or DEFAULT_OPTIMIZATION},
            "providers": list(settings.get("providers") or ["CPUExecutionProvider"])}


def open_session(path: Path, threads: int = 1, options: dict | None = None,
                 providers: list[str] | None = None, *, module: str | None = None) -> OnnxRuntimeSession:
    """Open an .onnx file on the CPU execution provider (or ``providers``, e.g. CUDA for the gpu target).

    Args:
        path: the .onnx artifact.
        threads: intra-op threads.
        options: fields of ``edgekit.formats.ONNXOptions``; only
            ``graph_optimization_level`` matters here; and ``input_shapes`` ({input name:
            shape}): free dimensions fixed (``edgekit bench``).
        providers: execution providers, in order (default: the CPU's).
        module: the runtime module the caller found (always ``onnxruntime``); accepted for
            the common signature of every runtime's open_session.

    Returns:
        A session whose ``run`` is one IOBinding run at batch 1.
    """
    return OnnxRuntimeSession(Path(path), threads, options, providers)


# ---- per-op profile (edgekit.runtimes.probe runs this in a fresh process, outside the timed rounds)

#: the two ops that convert between float and integer in a QDQ graph
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
#: ops that do a model's arithmetic (as ONNX or as onnxruntime's fused contrib ops): in a
#: quantized row, one of these running in float is not in a quantized kernel
COMPUTE_OPS = frozenset({"Conv", "FusedConv", "ConvTranspose", "MatMul", "FusedMatMul", "Gemm", "FusedGemm",
                         "LSTM", "GRU", "RNN", "Attention", "MultiHeadAttention", "Einsum"})


def profile_ops(path: Path, threads: int = 1, options: dict | None = None, samples=None, runs: int = 50,
                module: str | None = None, workdir=None, precision: str | None = None) -> dict:
    """Per-node times from onnxruntime's own profiler: a separate session with
    ``SessionOptions.enable_profiling`` (every other setting as the timed session's) runs
    ``runs`` inferences; ``end_profiling()`` writes a JSON trace whose "Node" events named
    ``<node>_kernel_time`` carry the op type, provider and duration in microseconds.

    The profiler's clock adds a roughly fixed cost to every node (about a microsecond here), so
    on a model of a few microseconds the shares of cheap nodes are overstated; the shares are the
    profiler's, and ``profiled_ms`` (its per-inference sum) says how far it stretched a run.

    Returns:
        ``{"runtime", "how", "runs", "partitions": None, "ops": [...], "qdq": {...},
        "float_compute": {...}, "profiled_ms"}``; each op ``{"name", "type", "provider", "ms",
        "share", "precision", "where", "accelerated"}`` in execution order.
    """
    import json
    import os
    import tempfile

    folder = tempfile.mkdtemp(prefix="ort-profile-", dir=str(workdir) if workdir else None)
    session = OnnxRuntimeSession(Path(path), threads, options, profile_prefix=os.path.join(folder, "profile"))
    xs = list(samples) if samples is not None and len(samples) else list(zeros_batch(session.inputs))
    feeds = [session.prepare(one_sample_batch(x)) for x in xs]
    runs = max(1, int(runs))
    for i in range(3):  # warm-up: the first runs allocate; their events are dropped below
        session.run(feeds[i % len(feeds)])
    warm = 3
    for i in range(runs):
        session.run(feeds[i % len(feeds)])
    trace = session.session.end_profiling()
    with open(trace) as handle:
        events = json.load(handle)
    try:
        os.remove(trace)
        os.rmdir(folder)
    except OSError:
        pass
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    skip_until = runs_seen[warm - 1]["ts"] + runs_seen[warm - 1]["dur"] if len(runs_seen) > warm else None
    nodes = {}
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        if skip_until is not None and e.get("ts", 0) < skip_until:
            continue
        args = e.get("args") or {}
        name = e["name"][: -len("_kernel_time")]
        node = nodes.get(name)
        if node is None:
            inputs = args.get("input_type_shape") or [{}]
            dtype = next(iter(inputs[0]), "") if inputs and isinstance(inputs[0], dict) else ""
            nodes[name] = node = {"name": name, "type": args.get("op_name", "?"), "provider": args.get("provider"),
                                  "input_dtype": dtype, "us": []}
        node["us"].append(float(e.get("dur", 0)))
    quantized = precision not in (None, "fp32", "fp16", "bf16")
    ops = list(nodes.values())
    # Each node runs once per inference: the mean of its runs without the slowest tenth (one
    # slow run, a page fault or the profiler flushing, would otherwise decide a cheap node's
    # share; a median of whole microseconds would not resolve one).
    # The runs in PROFILE_ROUNDS consecutive blocks (each node runs once per inference, in order):
    # each block's share says whether a node's share is its own or the machine's.
    blocks = [[_trimmed_mean(part) for part in np.array_split(np.asarray(op["us"], np.float64), PROFILE_ROUNDS)]
              for op in ops]
    block_totals = [sum(column) or 1.0 for column in zip(*blocks)] if blocks else []
    for op, own in zip(ops, blocks):
        op["us"] = _trimmed_mean(op["us"])
        op["share_rounds"] = [round(v / t, 4) for v, t in zip(own, block_totals)]
    total = sum(op["us"] for op in ops) or 1.0
    compute_seen = [i for i, op in enumerate(ops) if op["type"] not in QDQ_OPS]
    first, last = (compute_seen[0], compute_seen[-1]) if compute_seen else (len(ops), -1)
    for i, op in enumerate(ops):
        us = op.pop("us")
        dtype = op.pop("input_dtype")
        op["ms"] = round(us / 1e3, 6)
        op["share"] = round(us / total, 4)
        op["precision"] = _ort_precision(op["type"], dtype)
        if op["type"] in QDQ_OPS:
            op["where"] = "{} ({})".format(op["provider"], "graph edge" if i < first or i > last else "left unfused")
            op["accelerated"] = not quantized
        elif quantized and op["type"] in COMPUTE_OPS:
            op["where"] = "{} (float kernel in a quantized graph)".format(op["provider"])
            op["accelerated"] = False
        else:
            op["where"] = op["provider"]
            op["accelerated"] = True
    qdq = [op for op in ops if op["type"] in QDQ_OPS]
    inner = [op for op in qdq if op["where"].endswith("(left unfused)")]
    floats = [op for op in ops if quantized and op["type"] in COMPUTE_OPS]
    return {
        "runtime": session.runtime, "partitions": None, "runs": runs, "ops": ops,
        "profiled_ms": round(total / 1e3, 6),
        "qdq": {"nodes": len(qdq), "share": round(sum(op["share"] for op in qdq), 4),
                "at_edges": len(qdq) - len(inner), "left_unfused": len(inner),
                "left_unfused_share": round(sum(op["share"] for op in inner), 4),
                "left_unfused_share_low": _low(inner), "share_low": _low(qdq)},
        "float_compute": {"nodes": len(floats), "share": round(sum(op["share"] for op in floats), 4),
                          "share_low": _low(floats), "types": sorted({op["type"] for op in floats})},
        "how": ("onnxruntime's profiler (enable_profiling, a separate session with the timed session's settings): "
                f"each node's kernel time, mean of {runs} runs after 3 warm-up runs without the slowest tenth "
                f"(share_rounds: the same in {PROFILE_ROUNDS} consecutive blocks); the "
                "profiler adds a roughly fixed "
                "cost per node, which overstates cheap nodes on a small model"),
    }


#: rounds and runs per round of op_times
OP_ROUNDS = 7
OP_RUNS = 30


def op_times(paths, threads: int = 1, samples=None, rounds: int = OP_ROUNDS, module: str | None = None,
             options: dict | None = None) -> list:
    """Each node's kernel time in every ONNX file of ``paths``, per round: ``[{"ops": [{"name",
    "type", "us": [per round]}], "how"}]``, one entry per path.

    One profiling session per file (``enable_profiling``, otherwise the timed session's
    settings); the files take turns, a block of OP_RUNS runs each per round, so a slow phase of
    the machine hits them alike. Each node's time in a round is the mean of its runs in that
    block without the slowest tenth (the profiler's clock resolves whole microseconds)."""
    import json
    import os
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="ort-op-times-")
    try:
        sessions = [OnnxRuntimeSession(Path(path), threads, options, profile_prefix=os.path.join(folder, f"p{k}"))
                    for k, path in enumerate(paths)]
        xs = list(samples) if samples is not None and len(samples) else [np.zeros(sessions[0].input_shape[1:], np.float32)]
        feeds = [[s.prepare(np.asarray(x, dtype=np.float32)[None]) for x in xs] for s in sessions]
        scopes = {session: _graph_scopes(path) for session, path in zip(sessions, paths)}
        for session, own in zip(sessions, feeds):
            for i in range(3):  # warm-up: the first runs allocate; their events are dropped below
                session.run(own[i % len(own)])
        for _ in range(rounds):
            for session, own in zip(sessions, feeds):
                for i in range(OP_RUNS):
                    session.run(own[i % len(own)])
        out = []
        for session in sessions:
            with open(session.session.end_profiling()) as handle:
                events = json.load(handle)
            runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                          if e.get("cat") == "Session" and e.get("name") == "model_run")[3:]
            nodes: dict = {}
            for e in events:
                if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
                    continue
                block = next((k // OP_RUNS for k, (begin, end) in enumerate(runs) if begin <= e.get("ts", 0) <= end), None)
                if block is None or block >= rounds:
                    continue
                name = e["name"][: -len("_kernel_time")]
                node = nodes.setdefault(name, {"name": name, "type": (e.get("args") or {}).get("op_name", "?"),
                                               "runs": [[] for _ in range(rounds)]})
                node["runs"][block].append(float(e.get("dur", 0)))
            for node in nodes.values():
                node["us"] = [_trimmed_mean(block) for block in node.pop("runs")]
                node["names"] = _scoped_names(node["name"], scopes.get(session))
            out.append({"ops": list(nodes.values()),
                        "how": (f"onnxruntime's profiler (enable_profiling), {rounds} interleaved rounds of {OP_RUNS} runs "
                                "per file, each node's mean per round without the slowest tenth")})
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _graph_scopes(path) -> dict | None:
    """Node name -> the names of its output tensors, from the ONNX file (host only: the onnx
    package); None where it cannot be read. onnxruntime names the nodes it makes after the one
    they replace (``Conv__727_token_0``) or after their output (``.../Relu6:0_nchwc``); the
    tensors carry the Keras scopes the node names may lack."""
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - names are a nicety: the profile's own names stay
        return None
    return {node.name: list(node.output) for node in graph.node}


def _scoped_names(name: str, scopes: dict | None) -> list:
    """The names that say where a profiled node came from: its own, without onnxruntime's
    suffixes, and the output tensors of the graph node it replaced."""
    import re

    base = re.sub(r"(_token_\d+|_nchwc)+$", "", name)
    names = [name] if base == name else [name, base]
    if scopes and base in scopes:
        names += scopes[base]
    return names


def _trimmed_mean(values) -> float:
    """The mean without the slowest tenth (0 for no values)."""
    if not len(values):
        return 0.0
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    return float(ordered[: max(1, int(np.ceil(len(ordered) * 0.9)))].mean())


#: consecutive blocks profile_ops splits its runs into, for each node's share per block
PROFILE_ROUNDS = 5


def _low(ops) -> float:
    """The smallest per-round share of ``ops`` together (0 without rounds)."""
    rounds = [op.get("share_rounds") or [] for op in ops]
    if not rounds or not all(rounds):
        return 0.0
    return round(min(sum(column) for column in zip(*rounds)), 4)


def _ort_precision(op_type: str, input_dtype: str) -> str:
    """A node's precision: its quantized kernel's (QLinear*, *Integer, QGemm ...), else its first input's type."""
    if (op_type.startswith("QLinear") or op_type in ("QGemm", "QAttention", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM")
            or op_type.endswith(("Integer", "IntegerToFloat"))):
        return "int8"
    return {"float": "fp32", "float16": "fp16", "double": "fp64"}.get(input_dtype, input_dtype or "unknown")


#: nodes that convert or move data without computing: what a quantized ONNX graph adds
LAYOUT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Transpose", "Reshape", "Cast",
                        "ReorderInput", "ReorderOutput", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Concat"})


def explain(row, profile, reference=None):
    """Phrases saying where a row's time goes in onnxruntime, read from its profile summary
    (results.json ``profile``; ``edgekit.report.causes`` joins them into the row's note), worst
    first. ``reference`` is a row of the same runtime to compare with (the fp32 sibling), or None."""
    from edgekit.runtimes import wording  # host only: devices never explain

    found = []  # (share, phrase): the largest share first
    qdq = profile.get("qdq") or {}
    if qdq.get("left_unfused") and qdq.get("left_unfused_share_low", qdq.get("left_unfused_share")) != 0:
        found.append((qdq.get("left_unfused_share") or 0, (f"{qdq['left_unfused']} QuantizeLinear/DequantizeLinear "
                      f"node(s) left unfused inside the graph: {wording.pct(qdq.get('left_unfused_share'))} of time")))
    edges = (qdq.get("nodes") or 0) - (qdq.get("left_unfused") or 0)
    if edges and row.get("precision") not in ("fp32", "fp16"):
        edge_share = round((qdq.get("share") or 0) - (qdq.get("left_unfused_share") or 0), 4)
        found.append((edge_share, (f"{edges} QuantizeLinear/DequantizeLinear node(s) at the graph edges: "
                                   f"{wording.pct(edge_share)} of time")))
    floats = profile.get("float_compute") or {}
    if floats.get("nodes") and wording.blamed(floats) > 0:
        found.append((floats.get("share") or 0, (f"{floats['nodes']} {'/'.join(floats.get('types') or [])} node(s) "
                      f"run in float in the {row.get('precision')} graph: {wording.pct(floats.get('share'))} of time")))
    out = [phrase for _, phrase in sorted(found, key=lambda item: -item[0])]
    ref = (reference or {}).get("profile") or {}
    if reference is not None and ref.get("ops") and profile.get("ops") and profile["ops"] > ref["ops"]:
        mine, theirs = profile.get("op_counts") or {}, ref.get("op_counts") or {}
        extra = [t for t, n in mine.items() if n > theirs.get(t, 0) and t in LAYOUT_OPS]
        out.append(f"{profile['ops']} nodes executed vs {ref['ops']} in {reference.get('precision')}"
                   + (f" (more {', '.join(extra)})" if extra else ""))
    return out or [wording.unaccelerated(profile, "every node in its fused or quantized kernel")]
