"""LiteRT (ai_edge_litert), or tflite_runtime on devices that still have it.

Shipped to devices as it is: stdlib + numpy + the interpreter only (see edgekit.runtimes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.runtimes import Session, cast_input, package_version

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

    def __init__(self, path: Path, threads: int, module: str | None = None):
        interpreter, self.runtime = interpreter_class(module)
        self.interpreter = interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"])
        self.settings = {"threads": threads, "delegate": "default (XNNPACK for float ops)"}
        # A Keras LSTM starts every call from a zero state, but TFLite's fused sequence ops
        # write their final state into variable tensors and start the next invoke from it:
        # without a reset, every sample after the first sees the previous one's state (on a
        # JapaneseVowels LSTM, 4% of predictions changed). Reset them before each inference.
        self.stateful = _has_stateful_ops(self.interpreter)
        wrapper = getattr(self.interpreter, "_interpreter", None)
        self._views = None
        if wrapper is not None and hasattr(wrapper, "Invoke") and _static(self.input) and _static(self.output):
            # Bound methods of the wrapper (the C++ interpreter): no Python layer per call.
            self._invoke = wrapper.Invoke
            self._reset = getattr(wrapper, "ResetVariableTensors", self.interpreter.reset_all_variables)
            self._views = (self.interpreter.tensor(self.input["index"])(), self.interpreter.tensor(self.output["index"])())
        else:  # an interpreter without the wrapper, or a dynamic shape: the public, copying calls
            self.timed_call = "set_tensor + invoke + get_tensor"
            self._invoke, self._reset = self.interpreter.invoke, self.interpreter.reset_all_variables
        if self.stateful:
            self.timed_call = "reset_all_variables + " + self.timed_call
            self.settings["reset_state_per_inference"] = True

    def prepare(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        scale, zero_point = self.input["quantization"]
        if np.issubdtype(dtype, np.integer) and scale:
            # Quantize with the input tensor's own (scale, zero_point), or accuracy is garbage.
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
        # An integer input without a scale is the model's own (token ids): cast, don't quantize.
        return cast_input(x.reshape(self.input["shape"]), dtype)

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
        # astype copies: a run returns a view of the interpreter's output buffer.
        if np.issubdtype(raw.dtype, np.integer):
            scale, zero_point = self.output["quantization"]
            return ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return raw.astype(np.float32)

    def runtime_only(self, feed: np.ndarray):
        self.run(feed)  # the input in place; the bare call then runs on it
        if self.stateful:
            reset, invoke = self._reset, self._invoke

            def bare():
                reset()
                invoke()

            return bare, "reset + bare Invoke() on the input in place"
        return self._invoke, "bare Invoke() on the input in place (no input copy, no output read)"


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


def open_session(path: Path, threads: int = 1, options: dict | None = None, *,
                 module: str | None = None) -> LiteRTSession:
    """Open a .tflite file in the LiteRT interpreter.

    Args:
        path: the .tflite artifact.
        threads: the interpreter's num_threads.
        options: the recipe's ``export.tflite`` options; all of them are conversion options.
        module: ``ai_edge_litert`` or ``tflite_runtime``; default: the first that imports.
    """
    return LiteRTSession(Path(path), threads, module)
