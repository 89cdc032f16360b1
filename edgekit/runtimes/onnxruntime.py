"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes import Session, package_version

LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")
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
    timed_call = "InferenceSession.run"

    def __init__(self, path: Path, threads: int, options: dict | None = None):
        import onnxruntime as ort

        options = dict(options or {})
        level = options.pop("graph_optimization_level", "ORT_ENABLE_ALL")
        if options:
            raise ValueError(f"unknown onnxruntime option(s) {', '.join(sorted(options))}; allowed: graph_optimization_level")
        if level not in LEVELS:
            raise ValueError(f"graph_optimization_level {level!r} is not one of {', '.join(LEVELS)}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        # Batch 1 of a small sequential CNN has no parallel branches worth a second pool.
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        so.log_severity_level = 3  # errors only; the CPU EP warns about unused providers
        providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.input = self.session.get_inputs()[0]
        self.output_names = [self.session.get_outputs()[0].name]
        self.dtype = DTYPES.get(self.input.type, np.float32)
        # Dynamic dims (strings or None) become 1: every run here is batch 1.
        self.shape = [d if isinstance(d, int) else 1 for d in self.input.shape]
        self.runtime = f"onnxruntime {package_version('onnxruntime', 'onnxruntime-gpu') or ort.__version__}"
        self.settings = {
            "threads": threads,
            "inter_op_threads": 1,
            "execution_mode": "sequential",
            "graph_optimization_level": level,
            "providers": self.session.get_providers(),
        }

    def prepare(self, x: np.ndarray) -> dict:
        return {self.input.name: np.ascontiguousarray(x.reshape(self.shape), dtype=self.dtype)}

    def run(self, feed: dict) -> np.ndarray:
        return self.session.run(self.output_names, feed)[0]

    def decode(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, dtype=np.float32)


def open_session(path: Path, threads: int = 1, options: dict | None = None) -> OnnxRuntimeSession:
    """Open an .onnx file on the CPU execution provider.

    Args:
        path: the .onnx artifact.
        threads: intra-op threads.
        options: optional ``graph_optimization_level``, one of ``LEVELS`` (default
            "ORT_ENABLE_ALL").

    Returns:
        A session whose ``run`` is one ``InferenceSession.run`` at batch 1.
    """
    return OnnxRuntimeSession(Path(path), threads, options)
