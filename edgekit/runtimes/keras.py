"""The Keras fp32 model itself, the baseline row.

Timed as a direct call of a ``tf.function`` (graph mode, batch 1), not ``model.predict``,
whose per-call overhead is milliseconds and would flatter every other row.
"""

from __future__ import annotations

import numpy as np

from edgekit.runtimes import Session, cast_input, package_version


class KerasSession(Session):
    timed_call = "tf.function(model)(x) + .numpy()"

    def __init__(self, model, threads: int):
        import tensorflow as tf

        from edgekit.convert import batch1_signature, input_dtype

        self.model = model
        self.fn = batch1_signature(model)
        # The model's own input dtype (int32 token ids stay int32), as in every artifact.
        self.dtype = input_dtype(model).as_numpy_dtype
        self.runtime = f"tensorflow {package_version('tensorflow')}"
        self.settings = {
            "threads": threads,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "mode": "tf.function, batch 1",
        }

    def prepare(self, x: np.ndarray):
        import tensorflow as tf

        return tf.constant(cast_input(x, self.dtype))

    def run(self, feed):
        return self.fn(feed).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        from edgekit.train import predict

        return predict(self.model, cast_input(x, self.dtype))


def open_session(model, threads: int = 1) -> KerasSession:
    return KerasSession(model, threads)
