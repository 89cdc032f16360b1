"""The runtime session of the test-only "npref" format (tests/contracts/test_extra_format.py).

Like every session in edgekit/runtimes/, it is shipped to devices as it is: the standard
library, numpy and ``edgekit.runtimes.Session`` only, Python 3.7 syntax.
"""

from __future__ import annotations

import numpy as np

from edgekit.runtimes import Session


def _softmax(h):
    e = np.exp(h - h.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


ACTIVATIONS = {"linear": lambda h: h, "relu": lambda h: np.maximum(h, 0), "softmax": _softmax}


class NprefSession(Session):
    """Dense layers as NumPy matmuls, one sample at a time."""

    timed_call = "numpy matmul chain"

    def __init__(self, path, threads, options):
        self.dtype = np.dtype((options or {}).get("accumulate", "float32"))
        with np.load(str(path)) as saved:
            count = len(saved["activations"])
            self.layers = [(saved["kernel{}".format(i)].astype(self.dtype), saved["bias{}".format(i)].astype(self.dtype),
                            ACTIVATIONS[str(saved["activations"][i])]) for i in range(count)]
            self.input_shape = (1,) + tuple(int(d) for d in saved["input_shape"])
        self.runtime = "numpy {}".format(np.__version__)
        self.settings = {"threads": threads, "accumulate": self.dtype.name}

    def prepare(self, x):
        return np.ascontiguousarray(x, dtype=self.dtype).reshape(1, -1)

    def run(self, feed):
        for kernel, bias, activation in self.layers:
            feed = activation(feed @ kernel + bias)
        return feed


def open_session(path, threads=1, options=None, module=None):
    """Open an npref .npz file (``module`` is the runtime module the device runner chose: numpy)."""
    return NprefSession(path, threads, options)
