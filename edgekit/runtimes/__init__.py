"""Runtimes: open an artifact in its real runtime and run it. THE sessions of edgekit.

Each runtime module has ``open_session(path, threads=1, options=None, *, module=None) ->
Session``. A session splits one inference into three steps so the timing loop measures only
the runtime's own work: ``prepare`` (float sample -> the model's input, e.g. int8
quantization) happens before the clock starts, ``run`` is what is timed, and ``decode`` turns
the raw output back into floats.

This package (minus ``keras.py``, which needs TensorFlow and stays on the host) is shipped to
ssh devices next to ``edgekit/targets/runner.py``, so a device runs exactly this code. Hence
the rules for every module here but keras.py: the standard library, numpy and the module's
own runtime (imported lazily, inside the session) only; no pydantic, no other edgekit module;
Python 3.7 syntax (annotations are strings thanks to ``from __future__ import annotations``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


class TensorInfo:
    """One input or output of a model: THE description of a model's interface in edgekit (the
    data, the converters, every session, ``edgekit bench`` and init read and write it).

    Attributes:
        name: the name the model gives it (a Keras input or output name; an artifact's own name
            with the runtime's decorations removed, see ``plain_name``).
        dtype: its numpy dtype (the artifact's own: int8 for a full-integer TFLite input).
        shape: batch first, as the runtime runs it; None for a free dimension.
        scale, zero_point: the quantization of an integer input or output (``real = (q -
            zero_point) * scale``); None where it is not quantized.
    """

    __slots__ = ("name", "dtype", "shape", "scale", "zero_point")

    def __init__(self, name, dtype, shape, scale=None, zero_point=None):
        self.name = str(name)
        self.dtype = np.dtype(dtype)
        self.shape = tuple(None if d is None or (isinstance(d, (int, np.integer)) and d < 0) or not
                           isinstance(d, (int, np.integer)) else int(d) for d in shape)
        self.scale = float(scale) if scale else None
        self.zero_point = int(zero_point) if self.scale is not None and zero_point is not None else None

    @property
    def free(self):
        """The positions of the free dimensions (the batch axis excluded)."""
        return [i for i, d in enumerate(self.shape) if d is None and i > 0]

    def to_dict(self):
        """Plain data for results.json (``io`` of a row) and device jobs."""
        out = {"name": self.name, "dtype": self.dtype.name, "shape": list(self.shape)}
        if self.scale is not None:
            out["quantization"] = {"scale": self.scale, "zero_point": self.zero_point}
        return out

    @classmethod
    def from_dict(cls, record):
        q = record.get("quantization") or {}
        return cls(record["name"], record["dtype"], record["shape"], q.get("scale"), q.get("zero_point"))

    def __repr__(self):
        return "TensorInfo({!r}, {}, {})".format(self.name, self.dtype.name, list(self.shape))


def plain_name(name) -> str:
    """A tensor name without what runtimes add to it: TFLite's ``serving_default_`` prefix and
    TensorFlow's ``:0`` suffix (``serving_default_image:0`` -> ``image``)."""
    name = str(name)
    if name.startswith("serving_default_"):
        name = name[len("serving_default_"):]
    head, colon, tail = name.rpartition(":")
    return head if colon and tail.isdigit() else name


def match_names(wanted, have, what="input"):
    """For each name in ``wanted``, the index of the same name in ``have`` (exact, else after
    ``plain_name`` on both sides).

    Raises:
        ValueError: a name of ``wanted`` is not in ``have``; names both lists.
    """
    have = list(have)
    plain = [plain_name(h) for h in have]
    out = []
    for name in wanted:
        if name in have:
            out.append(have.index(name))
        elif plain_name(name) in plain:
            out.append(plain.index(plain_name(name)))
        else:
            raise ValueError("no {} named {!r}: the model's {}s are {}; the data's are {}".format(
                what, name, what, ", ".join(have), ", ".join(wanted)))
    return out


def field_names(x):
    """The input (or output) names of a batch of several (a structured array: one field per
    tensor), or None for a plain array (one input or output)."""
    return getattr(getattr(x, "dtype", None), "names", None)


def one_sample_batch(sample):
    """One sample (a row of a batch: an array, or a record of a structured batch) as a batch of
    one: float32 for a plain array (edgekit's data is float32; sessions cast to the model's
    dtype), each field's own dtype for several inputs."""
    if field_names(sample) is not None:
        return np.asarray(sample).reshape(1)
    return np.asarray(sample, dtype=np.float32)[None]


def as_samples(samples):
    """Samples (an array, or a list of samples) as one batch: float32 for a model of one input
    (edgekit's data is float32), each field's own dtype for several inputs (a structured batch)."""
    if isinstance(samples, np.ndarray):
        return samples if samples.dtype.names else samples.astype(np.float32, copy=False)
    items = list(samples)
    if items and field_names(items[0]) is not None:
        return np.array(items, dtype=items[0].dtype)
    return np.asarray(items, dtype=np.float32)


def join_fields(named):
    """A structured batch from ``[(name, array), ...]`` (every array batch first, one length):
    how edgekit holds the inputs or outputs of a model that has several."""
    named = [(str(n), np.asarray(a)) for n, a in named]
    count = len(named[0][1]) if named else 0
    out = np.empty(count, dtype=[(n, a.dtype, a.shape[1:]) for n, a in named])
    for n, a in named:
        out[n] = a
    return out


def decoded(infos, arrays):
    """The float32 outputs of one run: a plain array (a copy) for a model of one output, a
    structured batch of one sample named after ``infos`` for several (an output without a batch
    axis of 1 first, a recurrent state's [2, 1, 128] or a scalar, is that sample whole)."""
    if len(infos) == 1:
        return np.array(arrays[0], dtype=np.float32)
    arrays = [np.array(a, dtype=np.float32) for a in arrays]
    return join_fields([(info.name, a if a.shape[:1] == (1,) else a[None]) for info, a in zip(infos, arrays)])


def split_fields(x, infos, what="input"):
    """The arrays of a batch for each of ``infos`` (TensorInfo), in their order: the fields of a
    structured batch matched by name, or a plain array for a model of one input.

    Raises:
        ValueError: the batch does not hold the model's inputs (names both).
    """
    names = field_names(x)
    if names is None:
        if len(infos) != 1:
            raise ValueError("the model takes {} {}s ({}); received one array: give one array per {} name".format(
                len(infos), what, ", ".join(i.name for i in infos), what))
        return [x]
    if len(infos) == 1 and len(names) == 1:
        return [x[names[0]]]
    found = match_names([i.name for i in infos], names, what)
    return [x[names[k]] for k in found]


def zeros_batch(infos, count=1):
    """``count`` samples of zeros for the inputs ``infos`` (a free dimension as 1): a plain
    float32 array for one input, a structured batch for several."""
    arrays = [(i.name, np.zeros((count,) + tuple(d or 1 for d in i.shape[1:]), i.dtype)) for i in infos]
    if len(arrays) == 1:
        return arrays[0][1].astype(np.float32)
    return join_fields(arrays)


class Session:
    """Base class of every runtime session."""

    #: runtime name and version, e.g. "ai_edge_litert 2.3.0"
    runtime: str = ""
    #: the settings the runtime was opened with (threads, hints, delegates ...)
    settings: dict[str, Any] = {}
    #: how the timed call is made, shown in the report
    timed_call: str = ""
    #: the model's (first) input shape at batch 1
    input_shape: tuple[int, ...] = ()
    #: every input and output (``TensorInfo``), in the model's order; a model with several
    #: takes a structured batch (one field per input, ``join_fields``) and decodes to one
    inputs: list = []
    outputs: list = []

    def io(self) -> dict:
        """The interface as it ran: ``{"inputs": [...], "outputs": [...]}`` (``TensorInfo.to_dict``)."""
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    def prepare(self, x: np.ndarray) -> Any:
        """Turn one float32 sample batch of shape [1, ...] into the runtime's input."""
        return x

    def run(self, feed: Any) -> Any:
        """One inference on a prepared input; this is the timed part."""
        raise NotImplementedError

    def decode(self, raw: Any) -> np.ndarray:
        """Turn a raw output into float32."""
        return np.asarray(raw, dtype=np.float32)

    def harness_cost(self, feed: Any, runs: int = 200) -> dict[str, Any] | None:
        """What the Python side of one ``run`` costs beyond the runtime's own work, measured
        outside the timed runs: ``{"call_ms": p50 of run(), "runtime_only_ms": p50 of the
        runtime's own part, "harness_ms": their difference, "how": "..."}``, or None where the
        runtime offers no way to time its own part.

        A session offers its own part through ``runtime_only(feed)``; this times it against
        ``run`` with ``measure_harness``."""
        bare = self.runtime_only(feed)
        if bare is None:
            return None
        call, how = bare
        return measure_harness(lambda: self.run(feed), call, runs, how)

    def runtime_only(self, feed: Any) -> tuple | None:
        """``(callable, how)``: the runtime's own part of ``run(feed)`` (the inference with the
        input already in place, nothing read back) as a no-argument call, and one line saying
        what it is; None where there is none. Used by ``harness_cost``."""
        return None

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float outputs for many samples, one batch-1 inference each."""
        return np.concatenate([self.decode(self.run(self.prepare(x[i : i + 1]))) for i in range(len(x))])


def measure_harness(call, runtime_only, runs: int = 200, how: str = "", blocks: int = 4) -> dict[str, Any]:
    """p50 of ``call()`` (a whole timed run) against p50 of ``runtime_only()`` (the runtime's
    own part of it), in alternating blocks so that a slow phase of a shared machine hits both.

    Args:
        call: the timed call, e.g. ``lambda: session.run(feed)``.
        runtime_only: the runtime's own part, e.g. a bare ``invoke``, timed by wall clock; or,
            where the runtime clocks its own inferences (OpenVINO's ``request.latency``), a call
            that makes one inference and returns that figure in nanoseconds, used instead.
        runs: timed calls of each, split over ``blocks`` (a tenth as many untimed calls first).

    Returns:
        ``{"call_ms", "runtime_only_ms", "harness_ms", "how", "runs"}``; harness_ms is
        call_ms - runtime_only_ms, never below 0 (on a tiny model the two p50s can cross).
    """
    clock = time.perf_counter_ns
    runs = max(blocks, int(runs))
    per_block = -(-runs // blocks)
    for _ in range(max(1, runs // 10)):
        call()
        runtime_only()
    calls, own = [], []
    for _ in range(blocks):
        for _ in range(per_block):
            start = clock()
            call()
            calls.append(clock() - start)
        for _ in range(per_block):
            start = clock()
            reported = runtime_only()
            elapsed = clock() - start
            own.append(reported if isinstance(reported, (int, float)) and reported >= 0 else elapsed)
    call_ms = float(np.median(calls)) / 1e6
    own_ms = float(np.median(own)) / 1e6
    # to the nanosecond: what the clock resolves
    return {"call_ms": round(call_ms, 6), "runtime_only_ms": round(own_ms, 6),
            "harness_ms": round(max(0.0, call_ms - own_ms), 6), "how": how, "runs": len(calls)}


def cast_input(x: np.ndarray, dtype) -> np.ndarray:
    """A float32 sample batch cast to a model input's own dtype (no quantization).

    The data stage stores every x as float32; integer inputs (token ids, category indices)
    are exact in float32 up to 2**24, so rounding and casting back gives the ids unchanged.
    """
    dtype = np.dtype(dtype)
    x = np.asarray(x)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(x.dtype, np.integer):
        x = np.rint(x)
    # a scalar input stays a scalar: ascontiguousarray alone returns at least one axis (a sample
    # rate fed as [16000] breaks a graph that unsqueezes it into a shape)
    return np.ascontiguousarray(x, dtype=dtype).reshape(x.shape)


def quantize_input(x: np.ndarray, dtype, scale: float, zero_point: int) -> np.ndarray:
    """A float batch as a TFLite input tensor of ``dtype`` with quantization (``scale``,
    ``zero_point``): a full-integer model's input is quantized with the tensor's own parameters,
    or accuracy is garbage; an integer input without a scale is the model's own (token ids): cast,
    not quantized."""
    if np.issubdtype(np.dtype(dtype), np.integer) and scale:
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
    return cast_input(x, dtype)


def dequantize_output(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """A TFLite output tensor as floats: an integer output with a scale dequantized with it, any
    other cast. Always a copy (a session's raw output may be a view of its buffer)."""
    if np.issubdtype(raw.dtype, np.integer) and scale:
        return ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)
    return raw.astype(np.float32)


def first_line(exc, limit: int = 300) -> str:
    """The first line of an exception's message (or its type's name), at most ``limit``
    characters, cut between words with " ..." (``edgekit.errors.shorten``'s plain form: this
    package runs on devices without the rest of edgekit)."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 3)
    return (text[:cut].rstrip(" ,:;-") if cut > 0 else text[:limit - 4]) + " ..."


def package_version(*names: str, module: str | None = None) -> str | None:
    """Version of the first installed distribution among ``names``, else ``module.__version__``.

    Args:
        names: distribution names (``ai-edge-litert``), tried in order.
        module: an imported module whose ``__version__`` is the fallback (Python 3.7 has no
            importlib.metadata; a wheel may provide a module under another distribution name).
    """
    try:
        from importlib import metadata  # novm: Python 3.8+, guarded
    except ImportError:  # Python 3.7
        metadata = None
    if metadata is not None:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    loaded = sys.modules.get(module) if module else None
    return getattr(loaded, "__version__", None) if loaded is not None else None
