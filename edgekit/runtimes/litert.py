"""LiteRT (ai_edge_litert), or tflite_runtime on devices that still have it.

Shipped to devices as it is: stdlib + numpy + the interpreter only (see edgekit.runtimes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes import (
    Session,
    TensorInfo,
    decoded,
    dequantize_output,
    field_names,
    first_line,
    one_sample_batch,
    package_version,
    plain_name,
    quantize_input,
    split_fields,
)

#: the modules that provide the interpreter, in order of preference, and their distributions
MODULES = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}


def interpreter_class(module: str | None = None):
    """(Interpreter class, 'module version'): ``module``, else ai_edge_litert, else tflite_runtime.

    Raises:
        ImportError: the module (or, without one, neither module) cannot be imported.
    """
    candidates = [module] if module else list(MODULES)
    for i, name in enumerate(candidates):
        try:
            interpreter = __import__(name + ".interpreter", fromlist=["Interpreter"]).Interpreter
        except ImportError as exc:
            # Fall back only when the module is not installed: a broken one (or an import cut
            # short by Ctrl-C) must say so, not pass for the other runtime.
            missing = isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == name
            if i == len(candidates) - 1 or not missing:
                raise
            continue
        return interpreter, f"{name} {package_version(MODULES.get(name, name), module=name)}"
    raise ImportError("no LiteRT interpreter module given")


# Ops that keep their recurrent state in variable tensors from one invoke to the next.
STATEFUL_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM",
                          "UNIDIRECTIONAL_SEQUENCE_RNN", "BIDIRECTIONAL_SEQUENCE_RNN", "SVDF"})


class LiteRTSession(Session):
    # Measured on the digits CNN (fp32, p50): set_tensor + invoke + get_tensor 3.51 us, bare
    # invoke 2.79 us; writing into a view of the input buffer held for the session's life and
    # calling the wrapper's Invoke directly 2.90-2.97 us. The public invoke() refuses to run
    # while any view is alive (it cannot tell a view of a static input from one of a buffer
    # that invoke might reallocate), so the fast path calls the wrapper's own Invoke, and only
    # for models whose input and output shapes are static (their buffers never move).
    timed_call = "copy into the input buffer + Invoke (output read as a view)"

    def __init__(self, path: Path, threads: int, module: str | None = None, input_shapes: dict | None = None):
        interpreter, self.runtime = interpreter_class(module)
        self.interpreter = interpreter(model_path=str(path), num_threads=threads)
        named_inputs, named_outputs = signature_io(self.interpreter)
        for name, details in named_inputs:  # free dimensions fixed by the caller (edgekit bench --shape)
            shape = (input_shapes or {}).get(name)
            if shape is not None:
                self.interpreter.resize_tensor_input(details["index"], [int(d) for d in shape])
        self.interpreter.allocate_tensors()
        if input_shapes:  # the details again: their shapes changed
            named_inputs, named_outputs = signature_io(self.interpreter)
        self.input = named_inputs[0][1]
        self.output = named_outputs[0][1]
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        self.inputs = [_info(name, d, input_shapes) for name, d in named_inputs]
        self.outputs = [_info(name, d) for name, d in named_outputs]
        self._in_details = [d for _, d in named_inputs]
        self._out_details = [d for _, d in named_outputs]
        self.settings = {"threads": threads, "delegate": "default (XNNPACK for float ops)"}
        # A Keras LSTM starts every call from a zero state, but TFLite's fused sequence ops
        # write their final state into variable tensors and start the next invoke from it:
        # without a reset, every sample after the first sees the previous one's state (on a
        # JapaneseVowels LSTM, 4% of predictions changed). Reset them before each inference.
        self.stateful = _has_stateful_ops(self.interpreter)
        wrapper = getattr(self.interpreter, "_interpreter", None)
        self._views = None
        static = all(_static(d) for d in self._in_details + self._out_details) and not input_shapes
        if wrapper is not None and hasattr(wrapper, "Invoke") and static:
            # Bound methods of the wrapper (the C++ interpreter): no Python layer per call.
            self._invoke = wrapper.Invoke
            self._reset = getattr(wrapper, "ResetVariableTensors", self.interpreter.reset_all_variables)
            self._views = (self.interpreter.tensor(self.input["index"])(), self.interpreter.tensor(self.output["index"])())
            self._many_views = ([self.interpreter.tensor(d["index"])() for d in self._in_details],
                                [self.interpreter.tensor(d["index"])() for d in self._out_details])
        else:  # an interpreter without the wrapper, or a dynamic shape: the public, copying calls
            self.timed_call = "set_tensor + invoke + get_tensor"
            self._invoke, self._reset = self.interpreter.invoke, self.interpreter.reset_all_variables
        if len(self.inputs) > 1 or len(self.outputs) > 1:
            # Several inputs or outputs: a tuple per feed and per output; one input and one
            # output keep the single-tensor methods of the class (their timed call unchanged).
            self.prepare, self.run, self.decode = self._prepare_many, self._run_many, self._decode_many
            self.timed_call = self.timed_call.replace("input buffer", "input buffers").replace(
                "output read as a view", "outputs read as views")
        if self.stateful:
            self.timed_call = "reset_all_variables + " + self.timed_call
            self.settings["reset_state_per_inference"] = True

    def prepare(self, x: np.ndarray) -> np.ndarray:
        if field_names(x) is not None:  # a structured batch of one field: this model's one input
            (x,) = split_fields(x, self.inputs)
        return quantize_input(x.reshape(self.input["shape"]), self.input["dtype"], *self.input["quantization"])

    def _prepare_many(self, x: np.ndarray) -> tuple:
        return tuple(quantize_input(np.asarray(a).reshape(d["shape"]), d["dtype"], *d["quantization"])
                     for a, d in zip(split_fields(x, self.inputs), self._in_details))

    def _run_many(self, feed: tuple) -> tuple:
        """One inference of a model with several inputs or outputs; the results are views of the
        output buffers (or copies), valid until the next run."""
        if self.stateful:
            self._reset()
        if self._views is None:
            for details, array in zip(self._in_details, feed):
                self.interpreter.set_tensor(details["index"], array)
            self._invoke()
            return tuple(self.interpreter.get_tensor(d["index"]) for d in self._out_details)
        ins, outs = self._many_views
        for view, array in zip(ins, feed):
            view[...] = array
        self._invoke()
        return outs

    def _decode_many(self, raw: tuple) -> np.ndarray:
        return decoded(self.outputs, [dequantize_output(np.asarray(r), *d["quantization"])
                                      for d, r in zip(self._out_details, raw)])

    def run(self, feed: np.ndarray) -> np.ndarray:
        """One inference; the result is a view of the output buffer, valid until the next run
        (``decode`` copies it)."""
        if self.stateful:
            self._reset()
        views = self._views
        if views is None:
            self.interpreter.set_tensor(self.input["index"], feed)
            self._invoke()
            return self.interpreter.get_tensor(self.output["index"])
        views[0][...] = feed  # the same copy set_tensor makes, without its checks
        self._invoke()
        return views[1]

    def decode(self, raw: np.ndarray) -> np.ndarray:
        return dequantize_output(raw, *self.output["quantization"])  # a copy: run returns a view of the buffer

    def runtime_only(self, feed: np.ndarray):
        self.run(feed)  # the input in place; the bare call then runs on it
        if self.stateful:
            reset, invoke = self._reset, self._invoke

            def bare():
                reset()
                invoke()

            return bare, "reset + bare Invoke() on the input in place"
        return self._invoke, "bare Invoke() on the input in place (no input copy, no output read)"


def signature_io(interpreter) -> tuple[list, list]:
    """([(name, input details)], [(name, output details)]): named and ordered by the model's
    signature where it has one (its keys are the Keras input and output names; the details'
    own order is the converter's, e.g. inputs sorted), else by the tensors' own names."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    try:
        signatures = interpreter._get_full_signature_list()  # the only view of the signature's indices
    except AttributeError:
        signatures = None
    if signatures and len(signatures) == 1:
        signature = next(iter(signatures.values()))
        by_in, by_out = {d["index"]: d for d in inputs}, {d["index"]: d for d in outputs}
        named_in = [(name, by_in.get(i)) for name, i in (signature.get("inputs") or {}).items()]
        named_out = [(name, by_out.get(i)) for name, i in (signature.get("outputs") or {}).items()]
        if len(named_in) == len(inputs) and len(named_out) == len(outputs) \
                and all(d is not None for _, d in named_in + named_out):
            return named_in, named_out
    return [(plain_name(d["name"]), d) for d in inputs], [(plain_name(d["name"]), d) for d in outputs]


def _info(name: str, details: dict, input_shapes: dict | None = None) -> TensorInfo:
    """A TensorInfo of an interpreter tensor: free dimensions (-1 in the signature) as None,
    unless the caller fixed them; the quantization of an integer tensor."""
    signature = details.get("shape_signature")
    shape = list(details["shape"]) if signature is None or (input_shapes or {}).get(name) is not None else \
        [None if int(d) < 0 else int(d) for d in signature]
    scale, zero_point = details.get("quantization") or (0.0, 0)
    return TensorInfo(name, details["dtype"], shape, scale if np.issubdtype(details["dtype"], np.integer) else None,
                      zero_point)


def _static(details: dict) -> bool:
    """Whether a tensor's shape is fixed (no -1 in its signature): its buffer never moves."""
    signature = details.get("shape_signature")
    return signature is None or all(int(d) >= 0 for d in signature)


def _has_stateful_ops(interpreter) -> bool:
    try:
        ops = interpreter._get_ops_details()  # the only graph view the interpreter API offers
    except AttributeError:  # an interpreter without it: reset always, it costs under a microsecond
        return True
    return any(op["op_name"] in STATEFUL_OPS for op in ops)


def user_settings(settings: dict) -> dict:
    """What a user sets to run a .tflite file as a row ran it (its ``settings``), in LiteRT's
    own terms: the input contract's ``runtime`` (``edgekit.report.contract``)."""
    out = {"call": "ai_edge_litert.interpreter.Interpreter(model_path=PATH, num_threads=N) "
                   "(tflite_runtime.interpreter.Interpreter takes the same)",
           "num_threads": settings.get("threads", 1),
           "delegates": "LiteRT's default (XNNPACK for float ops): no experimental_delegates"}
    if settings.get("reset_state_per_inference"):
        out["reset_all_variables"] = "before every inference (its sequence ops keep state between invokes)"
    return out


def open_session(path: Path, threads: int = 1, options: dict | None = None, *,
                 module: str | None = None) -> LiteRTSession:
    """Open a .tflite file in the LiteRT interpreter.

    Args:
        path: the .tflite artifact.
        threads: the interpreter's num_threads.
        options: the recipe's ``export.tflite`` options (all of them conversion options), and
            ``input_shapes`` ({input name: shape}): free dimensions fixed (``edgekit bench``).
        module: ``ai_edge_litert`` or ``tflite_runtime``; default: the first that imports.
    """
    return LiteRTSession(Path(path), threads, module, (options or {}).get("input_shapes"))


# ---- per-op profile (edgekit.runtimes.probe runs this in a fresh process, outside the timed rounds)

#: prefix models timed per segment: rounds, and a floor and ceiling on invokes per round
PREFIX_ROUNDS = 5
PREFIX_RUNS = (5, 200)
#: seconds of invokes per prefix and round the runs aim at
PREFIX_ROUND_S = 0.01


def profile_ops(path: Path, threads: int = 1, options: dict | None = None, samples=None, runs: int = 50,
                module: str | None = None, workdir=None, precision: str | None = None) -> dict:
    """Which ops XNNPACK took and the time of every segment of the execution plan.

    LiteRT's Python API has no per-op timer. What it has: after allocate_tensors,
    ``_get_ops_details()`` lists the model's ops and one DELEGATE entry per XNNPACK partition
    (with the partition's input and output tensors); walking back from a partition's outputs
    through the ops that produce them, up to its inputs, gives the ops it covers. The execution
    plan is then a list of segments (each partition is one; each op outside XNNPACK is its own),
    and a segment's time is the difference between two PREFIX models: copies of the .tflite that
    keep only the first k segments' operators (their outputs: every tensor a later op or the
    graph output needs), timed with the same interpreter settings, interleaved, in
    PREFIX_ROUNDS rounds (the min over rounds of each prefix's median). A model with one
    segment needs no prefix. The first segment's time includes the fixed cost of an Invoke.

    Returns:
        ``{"runtime", "how", "runs", "partitions", "ops": [...], "segments": [...], "total_ms"}``;
        each op ``{"index", "name", "type", "where", "accelerated", "precision", "segment",
        "ms", "share"}`` (ms and share: a single-op segment's own, else None: the time of a
        partition is its segment's). ``shares_unknown`` says why, where segments could not be timed.
    """
    session = LiteRTSession(Path(path), threads, module, (options or {}).get("input_shapes"))
    interpreter = session.interpreter
    ops = interpreter._get_ops_details()
    tensors = {int(t["index"]): t for t in interpreter.get_tensor_details()}
    partitions, covered = _partitions(ops)
    segments = _segments(ops, covered, len(partitions))
    out_ops = []
    for op in ops:
        if op["op_name"] == "DELEGATE":
            continue
        index = int(op["index"])
        outputs = [int(t) for t in op["outputs"] if int(t) >= 0]
        name = tensors[outputs[0]]["name"] if outputs and outputs[0] in tensors else f"op{index}"
        part = covered.get(index)
        out_ops.append({
            "index": index, "name": name, "type": op["op_name"],
            "where": f"XNNPACK partition {part}" if part is not None else "builtin kernel",
            "accelerated": part is not None,
            "precision": _precision(op.get("result_types") or op.get("operand_types") or []),
            "segment": next(s for s, seg in enumerate(segments) if index in seg["ops"]),
            "ms": None, "share": None,
        })
    if samples is not None and len(samples):
        feed = session.prepare(one_sample_batch(samples[0]))
    else:
        feed = tuple(np.zeros(d["shape"], d["dtype"]) for d in session._in_details)
    # per input tensor index (a prefix model keeps the graph's tensor indices)
    feed = dict(zip((d["index"] for d in session._in_details), feed if isinstance(feed, tuple) else (feed,)))
    result = {"runtime": session.runtime, "partitions": len(partitions), "ops": out_ops, "segments": [],
              "runs": 0, "total_ms": None}
    how = ("LiteRT has no per-op timer: ops inside an XNNPACK partition are read from the delegate's "
           "partitions (_get_ops_details); each segment (a partition, or one op outside XNNPACK) is timed as "
           f"the difference between prefix models holding the first k segments, interleaved, min over {PREFIX_ROUNDS} rounds "
           "of the median; the first segment includes the fixed cost of an Invoke")
    try:
        if len(segments) <= 1:
            times, runs_done, rounds = _time_models([path], session, feed, threads, module, model_bytes=None)
            how = "one segment (every op in {}): no prefix timing needed; its time is the whole Invoke".format(
                "one XNNPACK partition" if partitions else "one builtin kernel")
        else:
            models = [_prefix_model(path, [i for seg in segments[:k] for i in seg["ops"]]) for k in range(1, len(segments))]
            times, runs_done, rounds = _time_models(models + [None], session, feed, threads, module, model_bytes=True,
                                            full=path)
    except Exception as exc:  # noqa: BLE001 - the where-it-ran facts stand without the times
        result["how"] = how
        result["shares_unknown"] = f"prefix models could not be timed: {first_line(exc, 200)}"
        result["segments"] = [{"ops": seg["ops"], "where": seg["where"], "ms": None, "share": None} for seg in segments]
        return result
    seg_ms = [max(0.0, times[k] - (times[k - 1] if k else 0.0)) for k in range(len(times))]
    total = sum(seg_ms) or 1.0
    # the same differences round by round: a segment's share in each round (its spread says
    # whether the share is the segment's or the machine's: a share 0 in one round is noise)
    by_round = list(zip(*rounds))
    round_shares = [[max(0.0, r[k] - (r[k - 1] if k else 0.0)) / (r[-1] or 1.0) for r in by_round]
                    for k in range(len(times))]
    result["total_ms"] = round(times[-1], 6)
    result["runs"] = runs_done
    result["how"] = how + "; each segment's share also per round (share_rounds)"
    for seg, ms, shares in zip(segments, seg_ms, round_shares):
        result["segments"].append({"ops": seg["ops"], "where": seg["where"], "ms": round(ms, 6),
                                   "share": round(ms / total, 4), "share_rounds": [round(v, 4) for v in shares]})
    for op in out_ops:
        seg = result["segments"][op["segment"]]
        if len(seg["ops"]) == 1:
            op["ms"], op["share"], op["share_rounds"] = seg["ms"], seg["share"], seg["share_rounds"]
    return result


def _precision(types) -> str:
    """fp32 / fp16 / int8 / int16 / int32 ... from an op's first result (or operand) type."""
    if not types:
        return "unknown"
    name = np.dtype(types[0]).name
    return {"float32": "fp32", "float16": "fp16", "float64": "fp64"}.get(name, name)


def _partitions(ops):
    """The XNNPACK partitions (DELEGATE entries) and, per original op index, the partition that covers it."""
    by_index = {int(op["index"]): op for op in ops}
    producer = {}
    for op in ops:
        if op["op_name"] != "DELEGATE":
            for t in op["outputs"]:
                producer[int(t)] = int(op["index"])
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    covered = {}
    for p, delegate in enumerate(partitions):
        inputs = {int(t) for t in delegate["inputs"]}
        stack, seen = [int(t) for t in delegate["outputs"]], set()
        while stack:
            tensor = stack.pop()
            if tensor < 0 or tensor in inputs or tensor in seen:
                continue
            seen.add(tensor)
            index = producer.get(tensor)
            if index is None or index in covered:
                continue
            covered[index] = p
            stack.extend(int(t) for t in by_index[index]["inputs"])
    return partitions, covered


def _segments(ops, covered, count):
    """The execution plan as segments, in an order every prefix of which is closed under its inputs."""
    originals = [op for op in ops if op["op_name"] != "DELEGATE"]
    groups = {}
    for op in originals:
        index = int(op["index"])
        key = ("p", covered[index]) if index in covered else ("o", index)
        groups.setdefault(key, []).append(index)
    by_index = {int(op["index"]): op for op in originals}
    producer_group = {}
    for key, members in groups.items():
        for index in members:
            for t in by_index[index]["outputs"]:
                producer_group[int(t)] = key
    needs = {key: set() for key in groups}
    for key, members in groups.items():
        for index in members:
            for t in by_index[index]["inputs"]:
                other = producer_group.get(int(t))
                if other is not None and other != key:
                    needs[key].add(other)
    order, done = [], set()
    while len(order) < len(groups):
        ready = [k for k in groups if k not in done and needs[k] <= done]
        if not ready:  # a cycle between partitions cannot be: keep the ops' own order
            ready = [k for k in groups if k not in done]
        key = min(ready, key=lambda k: min(groups[k]))
        order.append(key)
        done.add(key)
    return [{"ops": sorted(groups[k]),
             "where": f"XNNPACK partition {k[1]}" if k[0] == "p" else "builtin kernel"} for k in order]


def _prefix_model(path: Path, keep) -> bytes:
    """A copy of the .tflite holding only subgraph 0's operators ``keep`` (indices); its outputs
    are every tensor those produce that a dropped op or the graph's outputs read."""
    from ai_edge_litert.tools import flatbuffer_utils  # the runtime's own tools

    model = flatbuffer_utils.read_model(str(path))
    if len(model.subgraphs) != 1:
        raise ValueError(f"the model has {len(model.subgraphs)} subgraphs (control flow): prefix models cut subgraph 0 only")
    graph = model.subgraphs[0]
    keep = set(keep)
    kept = [op for i, op in enumerate(graph.operators) if i in keep]
    dropped = [op for i, op in enumerate(graph.operators) if i not in keep]
    produced = [int(t) for op in kept for t in (op.outputs if op.outputs is not None else []) if int(t) >= 0]
    needed = {int(t) for op in dropped for t in (op.inputs if op.inputs is not None else [])}
    needed |= {int(t) for t in graph.outputs}
    outputs = [t for t in dict.fromkeys(produced) if t in needed]
    if not outputs:
        raise ValueError("a prefix produces nothing a later op reads")
    graph.operators = kept
    graph.outputs = outputs
    model.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _time_models(models, session, feed, threads, module, model_bytes=None, full=None):
    """The min over PREFIX_ROUNDS rounds of the median Invoke time (ms) of each model in
    ``models`` (bytes of a prefix model; None or a path: the full model), all timed interleaved;
    the runs made; and each model's median per round."""
    import time

    interpreter_cls, _ = interpreter_class(module)
    live = []
    for model in models:
        if isinstance(model, (bytes, bytearray)):
            it = interpreter_cls(model_content=bytes(model), num_threads=threads)
        else:
            it = interpreter_cls(model_path=str(model if model is not None else full), num_threads=threads)
        for details in it.get_input_details():  # free dimensions as the session fixed them
            if tuple(details["shape"]) != feed[details["index"]].shape:
                it.resize_tensor_input(details["index"], list(feed[details["index"]].shape))
        it.allocate_tensors()
        for details in it.get_input_details():
            it.set_tensor(details["index"], feed[details["index"]])
        stateful = _has_stateful_ops(it)
        invoke, reset = it.invoke, it.reset_all_variables
        live.append((invoke, reset, stateful))
    clock = time.perf_counter
    start = clock()
    for invoke, reset, stateful in live:  # warm-up, and the cost of one run
        for _ in range(3):
            if stateful:
                reset()
            invoke()
    per = (clock() - start) / (3 * len(live))
    runs = int(min(PREFIX_RUNS[1], max(PREFIX_RUNS[0], PREFIX_ROUND_S / max(per, 1e-7))))
    best = [float("inf")] * len(live)
    per_round = [[] for _ in live]
    for r in range(PREFIX_ROUNDS):
        order = list(range(len(live)))
        order = order[r % len(order):] + order[:r % len(order)]
        for k in order:
            invoke, reset, stateful = live[k]
            times = []
            for _ in range(runs):
                if stateful:
                    reset()
                    t0 = clock()
                    invoke()
                else:
                    t0 = clock()
                    invoke()
                times.append(clock() - t0)
            per_round[k].append(float(np.median(times)) * 1e3)
            best[k] = min(best[k], per_round[k][-1])
    return best, runs * PREFIX_ROUNDS, per_round


#: single-op models timed per op: rounds; the runs of each op in a round aim at OP_ROUND_S seconds
OP_ROUNDS = 7
OP_ROUND_S = 0.003


def op_times(paths, threads: int = 1, samples=None, rounds: int = OP_ROUNDS, module: str | None = None) -> list:
    """Each op's own time in every artifact of ``paths``, per round: ``[{"ops": [{"index",
    "name", "type", "us": [per round]}], "how"}]``, one entry per path.

    LiteRT has no per-op timer, and inside one XNNPACK partition no op has a time of its own.
    So every op of the model becomes a model of its own: a copy of the flatbuffer whose only
    operator is that op, its activation inputs the graph's inputs (zeros; the model's own input
    gets the first sample), its outputs the graph's outputs, and only its own constant buffers
    kept. Each is opened as the timed sessions open theirs (XNNPACK takes it where it can) and
    its Invoke timed: every single-op model of every path interleaved in ``rounds`` rounds (a
    slow phase of the machine hits the artifacts alike), the median of each block. An op's time
    so includes one Invoke's fixed cost (about 0.3 us here) and none of the model's transitions
    between partitions: what its kernel costs, not what cutting it out saves.
    """
    import time

    interpreter_cls, _ = interpreter_class(module)
    entries, live = [], []
    for path in paths:
        ops = []
        for index, name, kind, blob, inputs in _single_op_models(path):
            ops.append({"index": index, "name": name, "type": kind, "us": []})
            if blob is None:  # a stateful op: its state is not a constant; left untimed
                continue
            it = interpreter_cls(model_content=blob, num_threads=threads)
            it.allocate_tensors()
            for detail in it.get_input_details():
                value = np.zeros(detail["shape"], detail["dtype"])
                if detail["name"] in inputs and samples is not None and len(samples):
                    scale, zero = detail["quantization"]
                    value = quantize_input(np.asarray(samples[0], np.float32).reshape(detail["shape"]), detail["dtype"],
                                           scale, zero)
                it.set_tensor(detail["index"], value)
            live.append((ops[-1], it.invoke))
        entries.append({"ops": ops})
    clock = time.perf_counter
    start = clock()
    for _, invoke in live:
        for _ in range(3):
            invoke()
    per = (clock() - start) / (3 * max(1, len(live)))
    runs = int(min(PREFIX_RUNS[1], max(PREFIX_RUNS[0], OP_ROUND_S / max(per, 1e-7))))
    for r in range(rounds):
        order = live[r % max(1, len(live)):] + live[: r % max(1, len(live))]
        for op, invoke in order:
            times = []
            for _ in range(runs):
                t0 = clock()
                invoke()
                times.append(clock() - t0)
            op["us"].append(float(np.median(times)) * 1e6)
    how = ("single-op models (each op alone in a copy of the .tflite, XNNPACK as the timed session), "
           f"{rounds} interleaved rounds of {runs} Invokes each, the median per round")
    for entry in entries:
        entry["how"] = how
    return entries


def _single_op_models(path):
    """(op index, output tensor name, op type, single-op model bytes or None, the names of the
    original graph inputs it reads) for every operator of subgraph 0."""
    from ai_edge_litert.tools import flatbuffer_utils  # the runtime's own tools

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    operators, graph_inputs, graph_outputs = graph.operators, graph.inputs, graph.outputs
    buffers, signatures = model.buffers, model.signatureDefs
    kinds = _op_names(model)

    def name_of(t):
        value = graph.tensors[t].name
        return value.decode() if isinstance(value, bytes) else str(value)

    def constant(t):
        data = buffers[graph.tensors[t].buffer].data
        return data is not None and len(data) > 0

    keep_always = {int(m.buffer) for m in (model.metadata or [])} | {0}
    out = []
    try:
        model.signatureDefs = []
        for index, op in enumerate(operators):
            kind = kinds[op.opcodeIndex]
            outputs = [int(t) for t in (op.outputs if op.outputs is not None else []) if int(t) >= 0]
            name = name_of(outputs[0]) if outputs else f"op{index}"
            if kind in STATEFUL_OPS or not outputs:
                out.append((index, name, kind, None, set()))
                continue
            tensors = [int(t) for t in (op.inputs if op.inputs is not None else []) if int(t) >= 0]
            used = {graph.tensors[t].buffer for t in tensors + outputs} | keep_always
            model.buffers = [b if k in used else type(b)() for k, b in enumerate(buffers)]
            graph.operators = [op]
            graph.inputs = [t for t in dict.fromkeys(tensors) if not constant(t)]
            graph.outputs = outputs
            reads = {name_of(t) for t in graph.inputs if t in set(int(i) for i in graph_inputs)}
            out.append((index, name, kind, bytes(flatbuffer_utils.convert_object_to_bytearray(model)), reads))
    finally:
        graph.operators, graph.inputs, graph.outputs = operators, graph_inputs, graph_outputs
        model.buffers, model.signatureDefs = buffers, signatures
    return out


def _op_names(model) -> list:
    """The builtin op name of each of the model's operator codes (a custom op: its custom code)."""
    from ai_edge_litert import schema_py_generated as schema

    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    out = []
    for code in model.operatorCodes:
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        out.append(custom if custom else names.get(builtin, str(builtin)))
    return out


def explain(row, profile, reference=None):
    """Phrases saying where a row's time goes in LiteRT, read from its profile summary
    (results.json ``profile``; ``edgekit.report.causes`` joins them into the row's note), worst
    first. ``reference`` is a row of the same runtime to compare with (the fp32 sibling), or None."""
    from edgekit.runtimes import wording  # host only: devices never explain

    out = []
    slow = profile.get("not_accelerated") or {}
    partitions = profile.get("partitions") or 0
    precision = row.get("precision")
    named = [t for t in wording.slow_types(profile) if wording.blamed(t) >= wording.NAMED_SHARE]
    ref_types = {t["type"]: t for t in wording.slow_types((reference or {}).get("profile") or {})}
    if slow.get("ops") and not partitions:
        why = " (no XNNPACK kernels for int16 activations)" if precision == "int16x8" else ""
        top = ", ".join(f"{t['type']} {wording.pct(t['share'])}" for t in named[:3])
        out.append(f"no op runs in XNNPACK{why}: all {slow['ops']} ops on built-in kernels"
                   + (f" ({top} of time)" if top else ""))
    elif named:
        for t in named[:2]:
            verb = "runs" if t["count"] == 1 else f"({t['count']} ops) run"
            out.append(f"{t['type']} {verb} outside XNNPACK on built-in kernels: {wording.pct(t['share'])} of time"
                       + (f" ({wording.us(t.get('ms'))})" if t.get("ms") is not None else ""))
            # the same op outside XNNPACK in the reference row too: how much slower it is here
            other = ref_types.get(t["type"])
            if other and other.get("ms") and t.get("ms") and t["ms"] / other["ms"] > 1.5:
                out.append(f"{t['type']} takes {t['ms'] / other['ms']:.1f}x as long as in {reference.get('precision')} "
                           f"({wording.us(t['ms'])} vs {wording.us(other['ms'])})")
    elif slow.get("ops"):
        out.append(f"{slow['ops']} op(s) outside XNNPACK ({wording.names(slow.get('types') or [])}): "
                   f"{wording.pct(slow.get('share'))} of time")
    else:
        out.append("every op in XNNPACK")
    edges = [t for t in profile.get("top_op_types") or [] if t["type"] in ("QUANTIZE", "DEQUANTIZE")]
    if edges and precision not in ("fp32", "fp16"):
        share = sum(t.get("share") or 0 for t in edges)
        if sum(wording.blamed(t) for t in edges) >= wording.NAMED_SHARE:
            out.append(f"{precision} adds QUANTIZE/DEQUANTIZE at the edges: {wording.pct(share)} of time")
    mine = profile.get("xnnpack") or {}
    theirs = ((reference or {}).get("profile") or {}).get("xnnpack") or {}
    if reference is not None and mine.get("ms") and theirs.get("ms") and wording.blamed(mine) >= wording.NAMED_SHARE:
        ratio = mine["ms"] / theirs["ms"]
        if ratio > 1.1:
            out.append(f"the XNNPACK part itself takes {ratio:.2f}x as long at {precision} "
                       f"({wording.us(mine['ms'])} vs {wording.us(theirs['ms'])} in {reference.get('precision')})")
    return out
