"""LiteRT (ai_edge_litert), or tflite_runtime on devices that still have it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes import Session, package_version


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai_edge_litert {package_version('ai-edge-litert')}"
    except ImportError:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, f"tflite_runtime {package_version('tflite-runtime')}"


class LiteRTSession(Session):
    timed_call = "set_tensor + invoke + get_tensor"

    def __init__(self, path: Path, threads: int):
        interpreter_class, self.runtime = _interpreter_class()
        self.interpreter = interpreter_class(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.settings = {"threads": threads, "delegate": "default (XNNPACK for float ops)"}

    def prepare(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):
            # Quantize with the input tensor's own (scale, zero_point), or accuracy is garbage.
            scale, zero_point = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
        return np.ascontiguousarray(x.reshape(self.input["shape"]), dtype=dtype)

    def run(self, feed: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], feed)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def decode(self, raw: np.ndarray) -> np.ndarray:
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = self.output["quantization"]
            return ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return raw.astype(np.float32)


def open_session(path: Path, threads: int = 1, options: dict | None = None) -> LiteRTSession:
    return LiteRTSession(Path(path), threads)
