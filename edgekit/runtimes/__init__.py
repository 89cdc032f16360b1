"""Runtimes: open an artifact in its real runtime and run it.

Each runtime module has ``open_session(path, threads) -> Session``. A session splits one
inference into three steps so the timing loop measures only the runtime's own work:
``prepare`` (float sample -> the model's input, e.g. int8 quantization) happens before the
clock starts, ``run`` is what is timed, and ``decode`` turns the raw output back into floats.
"""

from __future__ import annotations

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


def package_version(*names: str) -> str | None:
    """Version of the first installed distribution among ``names``."""
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None
