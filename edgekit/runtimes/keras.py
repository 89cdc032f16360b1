"""The Keras fp32 model itself, the baseline row.

Timed as a direct call of a ``tf.function`` (graph mode, batch 1), not ``model.predict``,
whose per-call overhead is milliseconds and would flatter every other row.
"""

from __future__ import annotations

import numpy as np

from edgekit.runtimes import Session, cast_input, decoded, field_names, package_version, split_fields


class KerasSession(Session):
    timed_call = "tf.function(model)(x) + .numpy()"

    def __init__(self, model, threads: int, shapes=None):
        import tensorflow as tf

        from edgekit.convert import batch1_signature, model_inputs, model_outputs

        self.model = model
        # ``shapes`` (the data's sample shapes) fix free dimensions as every artifact fixes them
        self.fn = batch1_signature(model, shapes)
        self.inputs, self.outputs = model_inputs(model, shapes), model_outputs(model)
        # The model's own input dtype (int32 token ids stay int32), as in every artifact.
        self.dtype = self.inputs[0].dtype
        self.input_shape = tuple(d or 1 for d in self.inputs[0].shape)
        self.runtime = f"tensorflow {package_version('tensorflow')}"
        self.settings = {
            "threads": threads,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "mode": "tf.function, batch 1",
        }
        if len(self.inputs) > 1 or len(self.outputs) > 1:
            self.prepare, self.run, self.decode = self._prepare_many, self._run_many, self._decode_many
            self.timed_call = "tf.function(model)(*inputs) + .numpy() of each output"

    def prepare(self, x: np.ndarray):
        import tensorflow as tf

        if field_names(x) is not None:  # a structured batch of one field: this model's one input
            (x,) = split_fields(x, self.inputs)
        return tf.constant(cast_input(x, self.dtype))

    def run(self, feed):
        return self.fn(feed).numpy()

    def _prepare_many(self, x: np.ndarray) -> list:
        import tensorflow as tf

        return [tf.constant(cast_input(a, info.dtype)) for a, info in zip(split_fields(x, self.inputs), self.inputs)]

    def _run_many(self, feed: list) -> tuple:
        result = self.fn(*feed)
        if isinstance(result, dict):
            return tuple(result[info.name].numpy() for info in self.outputs)
        return (result.numpy(),)

    def _decode_many(self, raw: tuple) -> np.ndarray:
        return decoded(self.outputs, raw)

    def predict(self, x: np.ndarray) -> np.ndarray:
        from edgekit.train.fit import predict

        if field_names(x) is None:
            x = cast_input(x, self.dtype)
        return predict(self.model, x)


def open_session(model, threads: int = 1, shapes=None) -> KerasSession:
    return KerasSession(model, threads, shapes)
