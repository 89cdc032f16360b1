"""A Keras 3 ``.keras`` file on Keras 3's JAX or PyTorch backend: the gpu target's fp32
baseline on GPU machines that have PyTorch or JAX but no TensorFlow.

The file is the trained model exported once by ``edgekit.convert.keras3``. Keras 3 picks its
backend from ``KERAS_BACKEND`` when it is first imported, so this session runs in its own
process (the device runner, started by edgekit.targets.gpu with ``KERAS_BACKEND`` set): the
backend of that process is the session's backend, and ``module`` (the runner's first
importable module of the job, ``jax`` or ``torch``) must name it.

Shipped like the other runtimes: stdlib + numpy + keras (and the backend) only, Python 3.7
syntax (see edgekit.runtimes).

Options (the job's ``options``):
    allow_cpu: run on the CPU when the backend sees no GPU (tests only: the row then says
        ``device: "cpu (test mode)"``); without it such a session refuses to open.
    throughput_batch: batch size N of the throughput figure (0: none).
    throughput_min_time_s: how long the throughput figure is timed, at least.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekit.runtimes import (
    Session,
    TensorInfo,
    as_samples,
    cast_input,
    decoded,
    field_names,
    package_version,
    split_fields,
)

#: the marker of "this machine cannot run the backend on a GPU": the gpu target then tries
#: the next backend (or skips the row) instead of failing it
NO_GPU = "no GPU visible to"

#: the backends this session runs (tensorflow is the host's own tf_keras path)
BACKENDS = ("jax", "torch")

_custom = None


def custom_objects() -> dict:
    """Keras 3 counterparts of edgekit's zoo layers (``edgekit>PositionEmbedding``), registered
    under the names the tf_keras layers carry, so an exported file loads without edgekit."""
    global _custom
    if _custom is None:
        import keras

        @keras.saving.register_keras_serializable(package="edgekit")
        class PositionEmbedding(keras.layers.Layer):
            """The learned position embedding (edgekit.models.transformer), in Keras 3."""

            def build(self, input_shape):
                self.embedding = self.add_weight(name="embedding", shape=tuple(input_shape[1:]),
                                                 initializer=keras.initializers.RandomNormal(stddev=0.02))

            def call(self, x):
                return x + self.embedding

        _custom = {"edgekit>PositionEmbedding": PositionEmbedding}
    return _custom


def load(path, safe_mode: bool = True):
    """The Keras 3 model in ``path`` (no compile), with edgekit's zoo layers known."""
    import keras

    return keras.saving.load_model(str(path), compile=False, custom_objects=custom_objects(), safe_mode=safe_mode)


class Keras3Session(Session):
    """One compiled batch-1 forward pass; ``run`` returns only once the device has finished."""

    def __init__(self, path: Path, threads: int, options: dict | None = None, module: str | None = None):
        import keras

        options = dict(options or {})
        self.backend = keras.backend.backend()
        if module and module != self.backend:
            raise RuntimeError(f"KERAS_BACKEND is {self.backend!r} in this process, the job asked for {module!r}: "
                               f"set KERAS_BACKEND={module} before keras is imported")
        if self.backend not in BACKENDS:
            raise RuntimeError(f"this session runs Keras 3 on jax or torch, not on {self.backend}")
        self.allow_cpu = bool(options.get("allow_cpu"))
        self.throughput_batch = int(options.get("throughput_batch") or 0)
        self.throughput_min_time_s = float(options.get("throughput_min_time_s") or 1.0)
        self.environment = {"keras": keras.__version__, "backend": self.backend}
        # The device first: without a GPU (and without the test mode) the file is not even read.
        where = self._jax_device() if self.backend == "jax" else self._torch_device(threads)
        self.model = load(path)
        self.dtype = np.dtype(getattr(self.model.inputs[0], "dtype", None) or "float32")
        # Dynamic dims (None) become 1: every timed run here is batch 1 of the test split's shape.
        self.input_shape = (1,) + tuple(1 if d is None else int(d) for d in self.model.inputs[0].shape[1:])
        self.inputs, self.outputs, self._dict_inputs = _interface(self.model)
        if self.backend == "jax":
            self._compile_jax(where)
        else:
            self._forward_torch(where)
        self.runtime = f"keras {keras.__version__} ({self.backend} {self.environment[self.backend]})"
        self.settings = {
            "threads": threads,
            "backend": self.backend,
            "device": self.device,
            "mode": self.mode,
            "batch": 1,
        }
        if self.test_mode:
            self.settings["test_mode"] = True
        # The runner sends the settings back, not the session: the versions and devices travel
        # here, and the gpu target moves them into its environment block.
        self.settings["environment"] = self.environment

    # ------------------------------------------------------------------ backends

    def _jax_device(self):
        import jax

        self.environment["jax"] = jax.__version__
        self.environment["jaxlib"] = package_version("jaxlib")
        devices = jax.devices()
        self.environment["devices"] = [str(d) for d in devices]
        gpus = [d for d in devices if d.platform in ("gpu", "cuda", "rocm")]
        if gpus:
            self.device = "{} ({})".format(getattr(gpus[0], "device_kind", "") or str(gpus[0]), gpus[0].platform)
            self.test_mode = False
        elif self.allow_cpu:
            self.device, self.test_mode = "cpu (test mode)", True
        else:
            raise RuntimeError("{} jax {} (devices: {})".format(NO_GPU, jax.__version__,
                                                              ", ".join(d.platform for d in devices)))
        return gpus[0] if gpus else devices[0]

    def _compile_jax(self, where) -> None:
        import jax

        model = self.model
        # Weights are arguments, not constants folded into the program: the program is what the
        # user would deploy (keras' own jit path does the same), and compiling stays fast.
        trainable = [jax.device_put(v.value, where) for v in model.trainable_variables]
        non_trainable = [jax.device_put(v.value, where) for v in model.non_trainable_variables]

        def forward(trainable, non_trainable, x):
            y, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return y

        fn = jax.jit(forward)  # runs where its arguments live: the weights were put on the device
        self._call = lambda x: fn(trainable, non_trainable, x)
        # np.asarray waits for the device and copies the result to the host: the timed call is
        # what an application sees, host array in, host array out, like the TensorFlow row.
        self._sync = np.asarray
        self.mode = "jax.jit(model.stateless_call), host array in, np.asarray out (device sync)"
        self.timed_call = "jax.jit(stateless_call)(x) + np.asarray"

    def _torch_device(self, threads: int):
        import torch

        self.environment["torch"] = torch.__version__
        self.environment["cuda"] = getattr(torch.version, "cuda", None)
        torch.set_num_threads(max(1, int(threads)))
        on_gpu = torch.cuda.is_available()
        if on_gpu:
            self.device = f"{torch.cuda.get_device_name(0)} (cuda)"
            self.environment["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            self.test_mode = False
        elif self.allow_cpu:
            self.device, self.test_mode = "cpu (test mode)", True
            self.environment["devices"] = ["cpu"]
        else:
            raise RuntimeError(f"{NO_GPU} torch {torch.__version__} (torch.cuda.is_available() is False)")
        return torch.device("cuda:0" if on_gpu else "cpu")

    def _forward_torch(self, target) -> None:
        import torch

        on_gpu = target.type == "cuda"
        model = self.model  # Keras' torch backend made its weights on its default device: cuda when available

        def call(x):
            with torch.no_grad():
                return model(torch.as_tensor(x).to(target), training=False)

        def sync(y):
            if on_gpu:
                torch.cuda.synchronize()
            return y.detach().cpu().numpy()

        self._call, self._sync = call, sync
        self.mode = "torch eager under no_grad, host array in, .cpu().numpy() out (cuda synchronize)"
        self.timed_call = "model(x) + torch.cuda.synchronize + .cpu().numpy()"

    # ------------------------------------------------------------------ the session

    def prepare(self, x: np.ndarray):
        if len(self.inputs) == 1:
            if field_names(x) is not None:
                (x,) = split_fields(x, self.inputs)
            return cast_input(x, self.dtype)  # the model's own input dtype (token ids stay integers)
        # several inputs: each in its own dtype, in the structure the model was built on
        arrays = [cast_input(a, i.dtype) for a, i in zip(split_fields(x, self.inputs), self.inputs)]
        return dict(zip(self._dict_inputs, arrays)) if self._dict_inputs else arrays

    def run(self, feed):
        if len(self.outputs) == 1:
            return self._sync(self._call(feed))
        result = self._call(feed)
        values = [result[k] for k in sorted(result)] if isinstance(result, dict) else list(result)
        return tuple(self._sync(v) for v in values)

    def decode(self, raw) -> np.ndarray:
        return decoded(self.outputs, list(raw)) if isinstance(raw, tuple) else np.asarray(raw, dtype=np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        outputs = super().predict(x)
        if self.throughput_batch and len(x):
            # The runner reads the settings after timing: the throughput figure travels there.
            self.settings["throughput"] = self.throughput(x, self.throughput_batch, self.throughput_min_time_s)
        return outputs

    def throughput(self, x: np.ndarray, batch: int, min_time_s: float = 1.0, min_runs: int = 10) -> dict:
        """Samples per second at batch ``batch`` (samples of ``x`` repeated to fill it): a
        figure of what the GPU sustains, never a latency (speedups use batch 1 only)."""
        take = np.resize(np.arange(len(x)), batch)
        feed = self.prepare(as_samples(x)[take])
        for _ in range(3):  # compiles the batch-N program, warms the device
            self.run(feed)
        times = []
        spent = 0.0
        while len(times) < min_runs or spent < min_time_s:
            start = time.perf_counter()
            self.run(feed)
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            spent += elapsed
        p50 = float(np.median(times))
        return {"batch": batch, "samples_per_s": batch / p50, "batch_ms_p50": p50 * 1e3, "runs": len(times),
                "device": self.device}


def _interface(model) -> tuple[list, list, list | None]:
    """(inputs, outputs as TensorInfo, the keys of a dict of inputs or None): the names a Keras 3
    model's call takes and returns (a dict output's keys, sorted as the call's flattening; else
    ``output_names``), as ``edgekit.convert.model_inputs`` / ``model_outputs`` name them on the
    host (this module ships without edgekit.convert)."""
    inputs = [TensorInfo(str(getattr(t, "name", f"input_{k}")), getattr(t, "dtype", None) or "float32", list(t.shape))
              for k, t in enumerate(model.inputs)]
    struct = getattr(model, "_inputs_struct", None)
    keys = None
    if isinstance(struct, dict):
        by_tensor = {id(t): k for k, t in struct.items()}
        keys = [by_tensor.get(id(t), i.name) for t, i in zip(model.inputs, inputs)]
    out_struct = getattr(model, "_outputs_struct", None)
    if isinstance(out_struct, dict):
        pairs = [(str(k), out_struct[k]) for k in sorted(out_struct)]
    else:
        names = list(getattr(model, "output_names", None) or [])
        if len(names) != len(model.outputs) or len(set(names)) != len(names):
            names = ["output_{}".format(k) for k in range(len(model.outputs))]
        pairs = list(zip(names, model.outputs))
    return inputs, [TensorInfo(n, "float32", list(t.shape)) for n, t in pairs], keys


def open_session(path: Path, threads: int = 1, options: dict | None = None, *, module: str | None = None) -> Keras3Session:
    """Open a Keras 3 ``.keras`` file on this process's Keras backend (``KERAS_BACKEND``).

    Args:
        path: the .keras file (``edgekit.convert.keras3.export``).
        threads: CPU threads (torch's intra-op threads; XLA's CPU client takes what it finds).
        options: ``allow_cpu``, ``throughput_batch``, ``throughput_min_time_s`` (see the module).
        module: the backend module the runner found (``jax`` or ``torch``).

    Raises:
        RuntimeError: the backend sees no GPU (a message starting with ``NO_GPU``) and
            ``allow_cpu`` is not set, or KERAS_BACKEND is not ``module``.
    """
    return Keras3Session(Path(path), threads, options, module)
