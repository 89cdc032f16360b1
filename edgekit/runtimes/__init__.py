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

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float outputs for many samples, one batch-1 inference each."""
        return np.concatenate([self.decode(self.run(self.prepare(x[i : i + 1]))) for i in range(len(x))])


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
