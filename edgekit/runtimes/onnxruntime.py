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
    # IOBinding skips run()'s per-call feed/fetch conversion: about 1.5 us less per call at
    # batch 1 (10.0 -> 8.4 us on the digits CNN), which matters when the model is that small.
    timed_call = "run_with_iobinding (input bound in prepare) + copy_outputs_to_cpu"

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
        self.output_name = self.session.get_outputs()[0].name
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
        # The input's own dtype: float32, or int32 for a model over token ids.
        array = cast_input(x.reshape(self.input_shape), self.dtype)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input.name, array)
        # ORT allocates the output each run, so every result is a fresh array.
        binding.bind_output(self.output_name, "cpu")
        return binding, array  # the array rides along: the binding points into its memory

    def run(self, feed: tuple) -> np.ndarray:
        self.session.run_with_iobinding(feed[0])
        return feed[0].copy_outputs_to_cpu()[0]

    def decode(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, dtype=np.float32)


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
