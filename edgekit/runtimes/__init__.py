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


class Session:
    """Base class of every runtime session."""

    #: runtime name and version, e.g. "ai_edge_litert 2.3.0"
    runtime: str = ""
    #: the settings the runtime was opened with (threads, hints, delegates ...)
    settings: dict[str, Any] = {}
    #: how the timed call is made, shown in the report
    timed_call: str = ""
    #: the model's input shape at batch 1
    input_shape: tuple[int, ...] = ()

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
    return np.ascontiguousarray(x, dtype=dtype)


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
