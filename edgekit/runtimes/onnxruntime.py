"""ONNX Runtime, CPU execution provider (or CUDA, for the gpu target).

Shipped to devices as it is: stdlib + numpy + onnxruntime only (see edgekit.runtimes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes import Session, cast_input, package_version

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
}


class OnnxRuntimeSession(Session):
    # IOBinding skips run()'s per-call feed/fetch conversion. Measured on the digits CNN (fp32,
    # p50): run(dict) 9.18 us, IOBinding + copy_outputs_to_cpu 7.58, IOBinding with the output
    # bound to a buffer allocated once 6.79, the same through the C++ binding object 6.51.
    timed_call = "run_with_iobinding (input and output bound in prepare)"

    def __init__(self, path: Path, threads: int, options: dict | None = None, providers: list[str] | None = None):
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
        self.session = ort.InferenceSession(str(path), so, providers=list(providers or ["CPUExecutionProvider"]))
        self.input = self.session.get_inputs()[0]
        output = self.session.get_outputs()[0]
        self.output_name = output.name
        # One output buffer for every binding, allocated once: ORT writes into it instead of
        # allocating a result per run. Only where the output's shape is known at batch 1
        # (dynamic dims other than the batch: ORT allocates, and copy_outputs_to_cpu reads).
        out_dims = list(output.shape or [])
        self._out = None
        if output.type in DTYPES and out_dims and all(isinstance(d, int) for d in out_dims[1:]):
            self._out = np.empty([d if isinstance(d, int) else 1 for d in out_dims], DTYPES[output.type])
        # The C++ session and binding objects under the Python wrappers (what their
        # run_with_iobinding calls), saving a Python call per run; the wrapper where absent.
        self._run = getattr(getattr(self.session, "_sess", None), "run_with_iobinding", None)
        self.dtype = DTYPES.get(self.input.type, np.float32)
        # Dynamic dims (strings or None) become 1: every run here is batch 1.
        self.input_shape = tuple(d if isinstance(d, int) else 1 for d in self.input.shape)
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
        array = cast_input(x.reshape(self.input_shape), self.dtype)
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

    def runtime_only(self, feed: tuple):
        # onnxruntime has no clock of its own per run (profiling has one, at a per-node cost):
        # the closest is the C++ call with input and output bound, which is all run() does
        # when the output buffer is preallocated; else run() also copies the output out.
        if feed[1] is not None:
            run, native = self._run, feed[1]
            return (lambda: run(native, None)), "bare C++ run_with_iobinding, input and output bound"
        binding, session = feed[0], self.session
        return (lambda: session.run_with_iobinding(binding)), "run_with_iobinding alone, without reading the output"


def open_session(path: Path, threads: int = 1, options: dict | None = None,
                 providers: list[str] | None = None, *, module: str | None = None) -> OnnxRuntimeSession:
    """Open an .onnx file on the CPU execution provider (or ``providers``, e.g. CUDA for the gpu target).

    Args:
        path: the .onnx artifact.
        threads: intra-op threads.
        options: fields of ``edgekit.formats.ONNXOptions``; only
            ``graph_optimization_level`` matters here.
        providers: execution providers, in order (default: the CPU's).
        module: the runtime module the caller found (always ``onnxruntime``); accepted for
            the common signature of every runtime's open_session.

    Returns:
        A session whose ``run`` is one IOBinding run at batch 1.
    """
    return OnnxRuntimeSession(Path(path), threads, options, providers)
