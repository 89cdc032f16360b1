"""OpenVINO runtime: an IR (.xml + .bin) compiled for the CPU plugin.

Shipped to devices as it is: stdlib + numpy + openvino only (see edgekit.runtimes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.runtimes import (
    Session,
    TensorInfo,
    cast_input,
    decoded,
    field_names,
    measure_harness,
    one_sample_batch,
    package_version,
    split_fields,
    zeros_batch,
)

#: where an IR says at which precision it is to be compiled (edgekit.convert.openvino writes it;
#: repeated here because this module is shipped to devices without the converter)
RUNTIME_PRECISION = ("runtime_options", "INFERENCE_PRECISION_HINT")

if TYPE_CHECKING:  # imported lazily at run time, after telemetry is switched off
    import openvino


def disable_telemetry() -> None:
    """Make OpenVINO's usage telemetry act as if the user had opted out, for this process.

    Unless ``opt_in_out --opt_out`` was run, openvino_telemetry assumes consent: ``import
    openvino`` sends a Google Analytics event, convert_model about 13 and nncf.quantize a few
    more, each from a forked process with a 3 s timeout. Builds must work offline, and a fork
    mid-benchmark disturbs the timings. Call before the first ``import openvino``; the user's
    consent file is left alone.
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import (
            ConsentCheckResult,
            OptInChecker,
        )
    except ImportError:  # no telemetry package: openvino falls back to a silent stub
        return
    # OpenVINO, ovc and NNCF share one Telemetry object, and each (re)initialisation decides
    # consent through this check; a declined Telemetry sends nothing.
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED


class OpenVINOSession(Session):
    """An IR compiled for "CPU" with one reused infer request."""

    # Measured on the digits CNN (fp32, p50): set_input_tensor + infer(share_outputs=True) +
    # get_output_tensor(0).data 15.2 us; the C++ binding's infer(tensor) with the output read
    # from a view fetched once 12.1 us (benchmark_app: 12.3); copying into the request's own
    # input buffer, or one request per prepared input, cost the same. The public infer()
    # wraps every call in a data dispatcher and an OVDict, about 3 us at this size.
    timed_call = "infer(input tensor) of the C++ request, output read as a view"

    def __init__(self, path: Path, threads: int, extra_config: dict | None = None, input_shapes: dict | None = None):
        disable_telemetry()
        import openvino as ov

        self._ov = ov
        core = ov.Core()
        model = core.read_model(Path(path))
        if input_shapes:  # free dimensions fixed by the caller (edgekit bench --shape)
            model.reshape({name: ov.PartialShape([int(d) for d in shape]) for name, shape in input_shapes.items()})
        self.inputs = [TensorInfo(_port_name(p, "input", k), _numpy_dtype(p.get_element_type()), _dims(p.get_partial_shape()))
                       for k, p in enumerate(model.inputs)]
        self.outputs = [TensorInfo(_port_name(p, "output", k), _numpy_dtype(p.get_element_type()),
                                   _dims(p.get_partial_shape())) for k, p in enumerate(model.outputs)]
        # f32, or what the IR itself asks for: a bf16 row's IR is the fp32 one marked bf16.
        precision = _ir_precision(model)
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise RuntimeError("this IR is to run at bf16, and OpenVINO's CPU plugin has no native bf16 on this "
                               "CPU (it needs AVX-512 BF16 or AMX): a bf16 row would not be bf16 here")
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(threads),
            # On CPUs with AVX-512 BF16 or AMX the plugin defaults to bf16 and would quietly
            # run an "fp32" model at lower precision; precision is the converter's decision,
            # or the bf16 row's (which asks for the plugin's bf16 on purpose).
            "INFERENCE_PRECISION_HINT": precision,
        }
        # profile_ops only (PERF_COUNT): never a timed session
        config.update(extra_config or {})
        self.compiled = core.compile_model(model, "CPU", config)
        # One request, reused, so the timed call holds no allocation or setup.
        self.request = self.compiled.create_infer_request()
        # Batch 1; a free dimension as 1 (a dynamic IR takes each sample's own shape: see prepare).
        self.input_shape = tuple(d or 1 for d in self.inputs[0].shape)
        # The IR's own input dtype: f32, or i32 for a model over token ids.
        self.input_dtype = self.inputs[0].dtype
        self._shapes = [None if any(d is None for d in i.shape[1:]) else tuple(d or 1 for d in i.shape)
                        for i in self.inputs]
        self._reshape = self._shapes[0]
        self.runtime = "openvino {}".format(package_version("openvino", module="openvino"))
        self.settings = {
            "device": "CPU",
            "performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT")).split(".")[-1],
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "num_streams": int(self.compiled.get_property("NUM_STREAMS")),
            "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            # Recorded to show what "f32" overrode on this machine (e.g. bf16).
            "cpu_default_precision": core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name(),
            "cpu_pinning": bool(self.compiled.get_property("ENABLE_CPU_PINNING")),
        }
        # Zeros in place for the probing inferences below (valid ids for a model over tokens).
        for k, info in enumerate(self.inputs):
            self.request.set_input_tensor(k, ov.Tensor(np.zeros(tuple(d or 1 for d in info.shape), info.dtype)))
        # The pybind class under openvino's Python InferRequest: its infer(tensor, share_outputs,
        # decode_strings) sets the input and runs, without the Python wrapper's dispatch.
        self._infer = _native_infer(self.request)
        # A static output keeps its buffer from one inference to the next: fetch the view once.
        self._out = None
        if self._infer is not None and self.compiled.output(0).get_partial_shape().is_static:
            self._out = self.request.get_output_tensor(0).data
        self._outs = None
        if self._infer is not None and all(o.get_partial_shape().is_static for o in self.compiled.outputs):
            self._outs = tuple(self.request.get_output_tensor(k).data for k in range(len(self.outputs)))
        if self._infer is None:
            self.timed_call = "set_input_tensor + infer(share_outputs=True) + get_output_tensor(0).data"
        if len(self.inputs) > 1 or len(self.outputs) > 1:
            # several inputs or outputs: a tensor per input, a view per output; one of each
            # keeps the class's methods
            self.prepare, self.run, self.decode = self._prepare_many, self._run_many, self._decode_many
            self.timed_call = self.timed_call.replace("input tensor", "input tensors").replace(
                "output read as a view", "outputs read as views")

    def prepare(self, x: np.ndarray) -> openvino.Tensor:
        # Wrap once, before the clock: infer({0: x}) would re-check and re-wrap the array on
        # every call, about 13 us of Python per inference (40% of a small CNN's latency).
        if field_names(x) is not None:  # a structured batch of one field: this model's one input
            (x,) = split_fields(x, self.inputs)
        array = cast_input(x if self._reshape is None else x.reshape(self._reshape), self.input_dtype)
        return self._ov.Tensor(array, shared_memory=True)

    def _prepare_many(self, x: np.ndarray) -> dict:
        arrays = [cast_input(np.asarray(a) if shape is None else np.asarray(a).reshape(shape), info.dtype)
                  for a, shape, info in zip(split_fields(x, self.inputs), self._shapes, self.inputs)]
        return {k: self._ov.Tensor(a, shared_memory=True) for k, a in enumerate(arrays)}

    def _run_many(self, feed: dict) -> tuple:
        if self._infer is None:
            for k, tensor in feed.items():
                self.request.set_input_tensor(k, tensor)
            self.request.infer(share_outputs=True)
        else:
            self._infer(self.request, feed, True, False)
        if self._outs is not None:
            return self._outs
        return tuple(self.request.get_output_tensor(k).data for k in range(len(self.outputs)))

    def _decode_many(self, raw: tuple) -> np.ndarray:
        return decoded(self.outputs, raw)

    def run(self, feed: openvino.Tensor) -> np.ndarray:
        """One inference; the result is a view of the request's output buffer, valid until the
        next run (``decode`` copies it)."""
        if self._infer is None:
            self.request.set_input_tensor(feed)
            self.request.infer(share_outputs=True)
            return self.request.get_output_tensor(0).data
        results = self._infer(self.request, feed, True, False)
        if self._out is not None:
            return self._out
        return next(iter(results.values()))

    def decode(self, raw: np.ndarray) -> np.ndarray:
        # The output is a view of the request's buffer, which the next run overwrites.
        return np.array(raw, dtype=np.float32)

    def harness_cost(self, feed, runs: int = 200):
        # OpenVINO clocks each inference itself (request.latency, ms): the runtime's own part.
        request, infer = self.request, self._infer

        def own() -> int:
            if infer is not None:
                infer(request, {}, True, False)
            else:
                request.infer()
            return int(request.latency * 1e6)

        self.run(feed)  # the input in place; own() runs on it
        return measure_harness(lambda: self.run(feed), own, runs,
                               "request.latency: OpenVINO's own clock of an infer() on the input in place")


def _ir_precision(model) -> str:
    """The inference precision an IR asks for in its rt_info (``runtime_options``
    INFERENCE_PRECISION_HINT: edgekit's bf16 rows), else f32."""
    key = list(RUNTIME_PRECISION)
    try:
        if model.has_rt_info(key):
            value = str(model.get_rt_info(key).astype(str))
            return value if value in ("bf16", "f32") else "f32"
    except (AttributeError, RuntimeError, TypeError):  # an older openvino without rt_info paths
        pass
    return "f32"


def _native_infer(request):
    """The pybind ``InferRequest.infer`` under openvino's Python class, or None where this
    openvino has none with the (inputs, share_outputs, decode_strings) signature."""
    for cls in type(request).__mro__[1:]:
        if "pyopenvino" in (getattr(cls, "__module__", "") or "") and hasattr(cls, "infer"):
            infer = cls.infer
            try:
                infer(request, {}, True, False)
            except TypeError:
                return None
            return infer
    return None


def _port_name(port, what: str, index: int) -> str:
    """A model port's name (its first tensor name), or ``input0`` ... where it has none."""
    try:
        names = sorted(port.get_names())
    except (AttributeError, RuntimeError):
        names = []
    try:
        return port.get_any_name() if names else f"{what}{index}"
    except RuntimeError:
        return names[0] if names else f"{what}{index}"


def _dims(partial_shape) -> list:
    """A partial shape as a list, None for each dynamic dimension."""
    return [d.get_length() if d.is_static else None for d in partial_shape]


def _numpy_dtype(element_type) -> np.dtype:
    """An OpenVINO element type as numpy; float32 where an older openvino has no Type.to_dtype."""
    try:
        return np.dtype(element_type.to_dtype())
    except (AttributeError, TypeError):
        return np.dtype(np.float32)


def user_settings(settings: dict) -> dict:
    """What a user sets to run an IR as a row ran it (its ``settings``), in OpenVINO's own terms:
    the input contract's ``runtime`` (``edgekit.report.contract``). The precision hint is the
    one that matters: on a CPU whose default is bf16, an fp32 IR compiled with OpenVINO's
    defaults runs in bf16 and does not reproduce its fp32 row."""
    precision = settings.get("inference_precision") or "f32"
    out = {"call": "openvino.Core().compile_model(PATH, DEVICE, config)",
           "device": settings.get("device", "CPU"),
           "config": {"PERFORMANCE_HINT": settings.get("performance_hint") or "LATENCY",
                      "INFERENCE_NUM_THREADS": settings.get("threads", 1),
                      "INFERENCE_PRECISION_HINT": precision}}
    default = settings.get("cpu_default_precision")
    if default and default != precision:
        out["note"] = ("this CPU's default INFERENCE_PRECISION_HINT is {}: compiled with OpenVINO's defaults, the IR "
                       "runs in {} and does not reproduce this row; set INFERENCE_PRECISION_HINT: {}".format(
                           default, default, precision))
    return out


def open_session(path: Path, threads: int = 1, options: dict | None = None, *,
                 module: str | None = None) -> OpenVINOSession:
    """Compile an IR for the CPU at batch 1, latency hint, f32 inference precision (bf16 for an
    IR that asks for it: an edgekit bf16 row's).

    Args:
        path: the .xml file; its .bin must sit next to it.
        threads: CPU inference threads.
        options: fields of ``edgekit.formats.OpenVINOOptions`` (validated with the recipe;
            all of them conversion options, ignored here), and ``input_shapes`` ({input name:
            shape}): free dimensions fixed (``edgekit bench``).
        module: the runtime module the caller found (always ``openvino``).
    """
    return OpenVINOSession(Path(path), threads, input_shapes=(options or {}).get("input_shapes"))


# ---- is a precision fast here? (edgekit.convert.auto asks before adding an automatic row; host only)

#: the probe's network: a chain of batch-1 matmuls of this width, as a dense layer or a 1x1
#: convolution of a small model runs them
PROBE_WIDTH = 256
PROBE_DEPTH = 8
PROBE_ROUNDS = 5
PROBE_RUNS = 20


def precision_probe(precision: str = "bf16", threads: int = 1) -> dict:
    """How fast this CPU runs ``precision`` against f32 in OpenVINO's CPU plugin: a chain of
    PROBE_DEPTH batch-1 matmuls (PROBE_WIDTH wide) compiled at both, timed interleaved in
    PROBE_ROUNDS rounds. Without AMX, bf16 runs on ``vdpbf16ps`` at half the FMA rate and whole
    models ran 0.45-0.83x of f32; with AMX (``brgemm_avx512_amx_bf16``) it was 1.3x here.

    Returns:
        ``{"ratio": f32 p50 / precision p50, "rounds": [per-round ratios], "kernel": the
        matmul's exec_type at ``precision``, "how"}``.
    """
    import time

    disable_telemetry()
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, PROBE_WIDTH], np.float32)
    y = x
    for _ in range(PROBE_DEPTH):
        y = ops.matmul(y, ops.constant(rng.standard_normal((PROBE_WIDTH, PROBE_WIDTH)).astype(np.float32)), False, False)
    model = ov.Model([y], [x], "precision_probe")
    core = ov.Core()
    hints = {"f32": "f32", "bf16": "bf16", "fp16": "f16"}
    requests = {}
    for name in ("f32", hints.get(precision, precision)):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": name, "INFERENCE_NUM_THREADS": int(threads),
                                                     "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES"})
        requests[name] = compiled.create_infer_request()
    feed = rng.standard_normal((1, PROBE_WIDTH)).astype(np.float32)
    medians: dict[str, list] = {name: [] for name in requests}
    for request in requests.values():
        request.infer({0: feed})
    for _ in range(PROBE_ROUNDS):
        for name, request in requests.items():
            times = []
            for _ in range(PROBE_RUNS):
                start = time.perf_counter()
                request.infer({0: feed})
                times.append(time.perf_counter() - start)
            medians[name].append(float(np.median(times)))
    low = hints.get(precision, precision)
    rounds = [f / p for f, p in zip(medians["f32"], medians[low])]
    kernels = [info.exec_type for info in requests[low].get_profiling_info()
               if info.node_type in ("FullyConnected", "MatMul") and "NOT_RUN" not in str(info.status)]
    return {"ratio": round(float(np.median(rounds)), 3), "rounds": [round(r, 3) for r in rounds],
            "kernel": kernels[0] if kernels else None,
            "how": (f"{PROBE_DEPTH} batch-1 {PROBE_WIDTH}x{PROBE_WIDTH} matmuls in OpenVINO's CPU plugin at f32 and "
                    f"{low}, {PROBE_ROUNDS} interleaved rounds of {PROBE_RUNS} runs, {threads} thread(s)")}


# ---- per-op profile (edgekit.runtimes.probe runs this in a fresh process, outside the timed rounds)

#: the precision a row is meant to run at, as the suffix of OpenVINO's exec_type names it
INTENDED = {"fp32": ("fp32",), "bf16": ("bf16",), "fp16": ("fp16",), "int8": ("int8",),
            "int8-mixed": ("int8", "fp32"), "int8-fast": ("int8", "fp32")}


def profile_ops(path: Path, threads: int = 1, options: dict | None = None, samples=None, runs: int = 50,
                module: str | None = None, workdir=None, precision: str | None = None) -> dict:
    """Per-node kernels and times from OpenVINO's own counters: the IR compiled as the timed
    session compiles it, plus ``PERF_COUNT: YES``; after each of ``runs`` inferences,
    ``request.get_profiling_info()`` gives every node's ``exec_type`` (the kernel, e.g.
    ``brgconv_avx512_amx_I8``, ``jit_avx512_BF16``, ``ref_any_FP32``) and ``real_time``. Nodes
    with status NOT_RUN (fused into another, or no-ops) are left out.

    Returns:
        ``{"runtime", "how", "runs", "partitions": None, "ops": [...], "reference_kernels": n}``;
        each op ``{"name", "type", "exec_type", "precision", "ms", "share", "where", "accelerated"}``.
    """
    # PROFILE_ROUNDS fresh compiles (the counters are a running average since compile_model):
    # each node's share per round says whether it is the node's or the machine's
    [nodes], [made], about = _profiled_rounds([path], threads, samples, PROFILE_ROUNDS, runs,
                                                (options or {}).get("input_shapes"))
    runs = sum(made)
    totals = [sum(node["rounds"][r] for node in nodes.values()) or 1.0 for r in range(PROFILE_ROUNDS)]
    for node in nodes.values():  # the total over the runs, as the shares below read it
        node["us"] = sum(us * n for us, n in zip(node["rounds"], made))
    intended = INTENDED.get(precision or "fp32", ("fp32",))
    ops = list(nodes.values())
    total = sum(op["us"] for op in ops) or 1.0
    for op in ops:
        us = op.pop("us")
        op["share_rounds"] = [round(v / t, 4) for v, t in zip(op.pop("rounds"), totals)]
        op["precision"] = exec_precision(op["exec_type"])
        op["ms"] = round(us / runs / 1e3, 6)
        op["share"] = round(us / total, 4)
        reference = op["exec_type"].lower().startswith("ref")
        # "unknown_*": a node without a kernel of its own (a Loop runs its body's nodes, which
        # the counters do not list); its suffix is not a compute precision
        composite = op["exec_type"].lower().startswith("unknown")
        if composite:
            op["precision"] = "unknown"
        op["where"] = "reference kernel" if reference else "no kernel of its own" if composite else "optimized kernel"
        op["accelerated"] = not reference and not composite and op["precision"] in intended
    return {"runtime": about["runtime"], "partitions": None, "runs": runs, "ops": ops,
            "reference_kernels": sum(1 for op in ops if op["where"] == "reference kernel"),
            "profiled_ms": round(total / runs / 1e3, 6),
            "inference_precision": about["inference_precision"],
            "how": ("OpenVINO's performance counters (PERF_COUNT, compiled as the timed session): each executed "
                    f"node's exec_type and real_time over {runs} runs in {PROFILE_ROUNDS} rounds (a fresh compile each, "
                    "after 3 warm-up runs; share_rounds: each round's share); the counters keep a running "
                    "average in whole microseconds, so a node under a microsecond can read 0")}


#: seconds of profiled inferences profile_ops aims at per round (50 to 2000 runs), and its rounds
PROFILE_SECONDS = 0.2
PROFILE_ROUNDS = 3


def _node_times(session, samples, runs: int):
    """(runs made, {node name: {"name", "type", "exec_type", "us": per inference}}) from a
    session compiled with PERF_COUNT: 3 warm-up runs, then at least ``runs`` (as many as fill
    PROFILE_SECONDS, at most 2000).

    The counters hold each node's running average since compile_model, in whole microseconds:
    they are read after the warm-up and at the end, and the runs in between are what counts.
    A node whose average fell under a microsecond may read NOT_RUN at the end: the union counts."""
    import time

    xs = list(samples) if samples is not None and len(samples) else list(zeros_batch(session.inputs))
    feeds = [session.prepare(one_sample_batch(x)) for x in xs]
    done = 1 if session._infer is not None else 0  # the constructor's probing inference
    start = time.perf_counter()
    for i in range(3):
        session.run(feeds[i % len(feeds)])
    done += 3
    per_run = (time.perf_counter() - start) / 3
    runs = int(min(2000, max(int(runs), PROFILE_SECONDS / max(per_run, 1e-7))))
    before = _counters(session.request)
    for i in range(runs):
        session.run(feeds[i % len(feeds)])
    after = _counters(session.request)
    nodes = {}
    for name in list(before) + [n for n in after if n not in before]:
        node_type, exec_type, average = after.get(name) or before[name][:2] + (0.0,)
        earlier = before.get(name, (None, None, 0.0))[2]
        us = max(0.0, average * (done + runs) - earlier * done)
        nodes[name] = {"name": name, "type": node_type, "exec_type": exec_type, "us": us / runs}
    return runs, nodes


#: rounds op_times compiles and profiles each artifact in
OP_ROUNDS = 5


def op_times(paths, threads: int = 1, samples=None, rounds: int = OP_ROUNDS, module: str | None = None) -> list:
    """Each node's time in every IR of ``paths``, per round: ``[{"ops": [{"name", "type",
    "exec_type", "us": [per round]}], "how"}]``, one entry per path.

    OpenVINO's counters are a running average since compile_model, so a round is a fresh
    compile (as the timed session compiles, plus PERF_COUNT) profiled as ``profile_ops`` does;
    the IRs take turns, round after round, so a slow phase of the machine hits them alike. A
    node missing from a round (not executed, or under a microsecond) reads 0 there."""
    per_path = _profiled_rounds(paths, threads, samples, rounds, 50)[0]
    how = (f"OpenVINO's performance counters (PERF_COUNT), {rounds} rounds, each a fresh compile of every IR in "
           f"turn profiled over {PROFILE_SECONDS} s of inferences")
    return [{"ops": [{**node, "us": node["rounds"]} for node in nodes.values()], "how": how} for nodes in per_path]


def _profiled_rounds(paths, threads: int, samples, rounds: int, runs: int, input_shapes: dict | None = None):
    """``([{node name: {"name", "type", "exec_type", "rounds": [us per inference, per round]}}
    per path], [[runs made per round] per path], {"runtime", "inference_precision"})``: ``rounds`` rounds, each a fresh compile of
    every IR in turn (the counters are a running average since compile_model) profiled by
    ``_node_times``. A node missing from a round (not executed, or under a microsecond) reads 0;
    ``input_shapes`` fixes free dimensions (``open_session``)."""
    per_path: list[dict] = [{} for _ in paths]
    made: list[list[int]] = [[] for _ in paths]
    about: dict = {}
    for r in range(rounds):
        for k, path in enumerate(paths):
            session = OpenVINOSession(Path(path), threads, {"PERF_COUNT": "YES"}, input_shapes)
            done, nodes = _node_times(session, samples, runs)
            made[k].append(done)
            for name, node in nodes.items():
                entry = per_path[k].setdefault(name, {"name": name, "type": node["type"], "exec_type": node["exec_type"],
                                                      "rounds": [0.0] * r})
                entry["rounds"].append(node["us"])
            for entry in per_path[k].values():
                entry["rounds"] += [0.0] * (r + 1 - len(entry["rounds"]))
            about = {"runtime": session.runtime, "inference_precision": session.settings.get("inference_precision")}
            del session
    return per_path, made, about


def _counters(request) -> dict:
    """node name -> (node type, exec_type, average real_time in us) of the executed nodes."""
    out = {}
    for info in request.get_profiling_info():
        if "NOT_RUN" in str(info.status):
            continue
        out[info.node_name] = (info.node_type, info.exec_type, info.real_time.total_seconds() * 1e6)
    return out


def exec_precision(exec_type: str) -> str:
    """The precision in an exec_type's suffix: ``brgconv_avx512_amx_I8`` -> int8, ``jit_avx512_BF16`` -> bf16."""
    suffix = exec_type.rsplit("_", 1)[-1].lower()
    return {"f32": "fp32", "fp32": "fp32", "bf16": "bf16", "f16": "fp16", "fp16": "fp16", "i8": "int8",
            "u8": "int8", "i32": "int32", "i64": "int64", "u1": "binary"}.get(suffix, suffix or "unknown")


#: what OpenVINO's performance counters resolve, per node (whole microseconds)
COUNTER_RESOLUTION_MS = 0.001


def explain(row, profile, reference=None):
    """Phrases saying where a row's time goes in OpenVINO, read from its profile summary
    (results.json ``profile``; ``edgekit.report.causes`` joins them into the row's note), worst
    first. ``reference`` is a row of the same runtime to compare with (the fp32 sibling), or None."""
    from edgekit.runtimes import wording  # host only: devices never explain

    out = []
    wanted = row.get("precision")
    ops = (profile.get("not_accelerated") or {}).get("top") or []
    groups: dict[tuple, list] = {}
    for op in ops:
        if op.get("where") == "reference kernel":
            why = f"ran {op['precision']} reference kernels"
        elif op.get("where") == "no kernel of its own":
            why = f"node(s) (exec_type {op['exec_type']}, no kernel of its own: its body's kernels are not listed)"
        else:
            why = f"ran at {op['precision']}, not {wanted}"
        groups.setdefault((op["type"], why), []).append(op)
    ranked = sorted(groups.items(), key=lambda item: -sum(o.get("share") or 0 for o in item[1]))
    for (node_type, why), members in ranked:
        share = sum(o.get("share") or 0 for o in members)
        if sum(wording.blamed(o) for o in members) < wording.NAMED_SHARE:  # the rounds must agree
            continue
        if why.startswith("node(s)"):
            out.append(f"{len(members)} {node_type} {why}: {wording.pct(share)} of time")
        else:
            out.append(f"{len(members)} {node_type} node(s) {why}: {wording.pct(share)} of time")
    # The counters keep whole microseconds (a running average, rounded down): a sum over n nodes
    # may be short by up to n us. A claim must hold at both ends of that range.
    kernels = profile.get("total_ms")
    slack = COUNTER_RESOLUTION_MS * (profile.get("ops") or 0)
    ref = (reference or {}).get("profile") or {}
    if reference is not None and kernels and ref.get("total_ms"):
        ratio = kernels / ref["total_ms"]
        low = kernels / (ref["total_ms"] + COUNTER_RESOLUTION_MS * (ref.get("ops") or 0))
        if low > 1.1:
            out.append(f"its kernels take {ratio:.2f}x as long as {reference.get('precision')}'s by OpenVINO's "
                       f"counters ({wording.us(kernels)} vs {wording.us(ref['total_ms'])})")
    p50 = (row.get("latency_ms") or {}).get("p50")
    harness = row.get("harness") or {}
    own = harness.get("runtime_only_ms")  # OpenVINO's own clock of one infer()
    if own and kernels and kernels + slack < 0.5 * own:
        python = f" (Python adds {wording.us(harness['harness_ms'])})" if harness.get("harness_ms") is not None else ""
        out.append(f"OpenVINO's node kernels take {wording.us(kernels)} of the {wording.us(own)} its own clock gives one "
                   f"infer(){python}: the rest is the infer request's own work outside the nodes")
    elif not own and p50 and kernels and kernels + slack < 0.5 * p50:
        out.append(f"OpenVINO's node kernels take {wording.us(kernels)} of its {wording.us(p50)} p50: the rest is spent "
                   "outside them (the infer request's own cost per call)")
    return out or [wording.unaccelerated(profile, "every node in an optimized kernel at its precision")]
