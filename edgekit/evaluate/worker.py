"""Every variant is converted and evaluated in a worker process: the task that travels there,
and the build's side of it.

The build first asks the stage cache alone (``convert_and_evaluate`` itself, with a cache that
never computes): a variant whose artifact and evaluation are both cached is finished on the spot,
so a fully cached build starts no worker. Any other variant becomes a ``VariantTask`` for the
executor: its Format row, precision and lineage, the Keras model as a .keras file, and what the
whole build shares (the recipe, the test and calibration data and the baseline outputs in one
.npz written once per build, the cache folder). The worker runs ``convert_variant`` and
``evaluate_converted``, the same code the build would run, and answers with the variant's fields
and the cache events it caused; its log lines and the cache's warnings stream back while it
runs. A worker that dies fails only its variant's rows, with the signal and the stage.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.data import VALIDATION_CAP
from edgekit.errors import NotCached
from edgekit.models.files import builder_import_dirs, custom_layers, keras_flavour, load_build_model
from edgekit.variant import BuildContext, Variant

#: the variant fields a worker sends back (the parent keeps its own opener and session)
FIELDS = ("status", "reason", "metrics", "parity", "settings", "runtime", "weights", "gzip_bytes", "key", "path",
          "seconds", "layer_error", "outputs", "io")


@dataclasses.dataclass(frozen=True)
class BuildInputs:
    """What every task of one build shares (small: the arrays travel as a file)."""

    recipe: Any
    run_dir: Path
    data_file: Path
    data_key: str
    versions: dict[str, str]
    cache_root: Path
    cache_enabled: bool
    #: folders put on the worker's import path: the recipe's, where a ``model.python`` builder
    #: lives (a .keras file names its custom layers by module, and loading imports them)
    import_dirs: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class VariantTask:
    """Convert ``model_file`` to ``fmt`` at ``precision`` and evaluate it: one variant."""

    fmt: Any
    precision: str
    name: str
    parent: str | None
    quantized: bool
    model_key: str
    model_file: Path
    keras: str  # "tf_keras" or "keras3": which Keras reads model_file
    build: BuildInputs
    #: (module, class) of the model's layers defined outside Keras (a ``model.python``
    #: builder's): a .keras file names them, but Keras finds only registered classes by itself
    custom_layers: tuple[tuple[str, str], ...] = ()


def prepare(threads: int) -> None:
    """A new worker's set-up: TensorFlow imported and configured as in the build's process, so
    the first task does not pay the import and every task sees the same thread settings."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras  # noqa: F401 - the import every task needs; done while the worker waits

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran an op
        pass


def run(task: VariantTask) -> dict[str, Any]:
    """In a worker: convert and evaluate one variant; returns its fields and cache events."""
    from edgekit import formats
    from edgekit.cache import Cache
    from edgekit.executors import base as executor_base

    formats.register(task.fmt)  # a row added at run time (a plugin, a test) arrives with its task

    def log(line: str) -> None:
        executor_base.report("log", line)

    executor_base.report("stage", "load")
    data, baseline_outputs = _load_data(task.build.data_file)
    model = load_build_model(task.model_file, task.keras, task.quantized, task.build.import_dirs, task.custom_layers)
    cache = Cache(root=task.build.cache_root, enabled=task.build.cache_enabled, log=log)
    ctx = BuildContext(task.build.recipe, data, baseline_outputs, task.build.run_dir, log, cache,
                       task.build.data_key, task.build.versions)
    # The two steps of convert_and_evaluate, each announced, so that a crash names its stage.
    variant = timed_convert_and_evaluate(task.fmt, task.precision, model, task.name, task.parent, task.quantized,
                                         task.model_key, ctx, announce=lambda stage: executor_base.report("stage", stage))
    result = {"fields": {name: getattr(variant, name) for name in FIELDS}, "events": cache.events}
    del variant, ctx, model, data, baseline_outputs
    release_memory()
    return result


def release_memory() -> None:
    """Give the memory a finished task freed back to the system.

    A worker converts one variant after another; glibc keeps what the converters freed (graph
    copies, calibration tensors) in its arenas, so at 224x224 the worker's RSS grew by hundreds
    of MB per variant without holding more. ``malloc_trim`` returns the free pages (Linux/glibc
    only; elsewhere nothing happens).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def timed_convert_and_evaluate(fmt, precision, model, name, parent, quantized, model_key: str, ctx: BuildContext,
                               announce=None) -> Variant:
    """``convert_and_evaluate``, each step announced (``announce(stage)``) and timed: its wall
    seconds in this process go to ``variant.seconds`` (a cache hit counts its copy)."""
    import time

    from edgekit.convert.stage import convert_variant
    from edgekit.evaluate.stage import evaluate_converted

    announce = announce or (lambda stage: None)
    announce("convert")
    started = time.perf_counter()
    mark = len(ctx.cache.events)
    variant = convert_variant(fmt, precision, model, name, parent, quantized, model_key, ctx)
    variant.seconds = {"convert": round(time.perf_counter() - started, 3)}
    read = ctx.cache.events[mark:]
    # What the converter freed, before the evaluation takes its own; an artifact read from the
    # cache freed nothing, and a full collection costs 0.17 s in a process holding TensorFlow
    # (8 of them were 1.4 s of a 1.7 s cached build of the digits CNN in a notebook's process).
    if not (read and all(event["reused"] for event in read)):
        release_memory()
    if variant.status == "ok":
        announce("evaluate")
        started = time.perf_counter()
        evaluate_converted(variant, fmt, ctx, model)  # the model: an int8 row's per-layer error
        variant.seconds["evaluate"] = round(time.perf_counter() - started, 3)
    return variant


#: in a worker: the data and models of the current build, read once (tasks come grouped by model)
_DATA: dict[Path, tuple] = {}


def _load_data(path: Path):
    if path not in _DATA:
        from edgekit.data import Dataset, Normalization

        _DATA.clear()
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            empty = saved["x_test"][:0]  # x_train's sample shape and dtype (a field per input for several)
            data = Dataset(x_train=empty, y_train=np.zeros(0), x_val=saved["x_val"], y_val=saved["y_val"], x_test=saved["x_test"],
                           y_test=saved["y_test"], x_calib=saved["x_calib"], class_names=meta["class_names"],
                           info=meta["info"], task=meta["task"],
                           normalization=Normalization.from_dict(meta["info"].get("normalize")),
                           embedded=bool(meta["info"].get("normalize", {}).get("embedded", False)),
                           output_tasks=meta.get("output_tasks") or {})
            _DATA[path] = (data, saved["baseline_outputs"])
    return _DATA[path]


class _CacheOnly:
    """The build's cache, but every miss raises ``NotCached`` instead of computing."""

    def __init__(self, cache):
        self._cache = cache
        self.missed = False

    def fetch(self, stage, key, name, *, load, compute, store, **kwargs):
        def miss():
            self.missed = True
            raise NotCached(stage)

        return self._cache.fetch(stage, key, name, load=load, compute=miss, store=store, **kwargs)

    def __getattr__(self, name):
        return getattr(self._cache, name)


class Pending:
    """One variant on its way: ``result()`` waits for its worker and returns the Variant."""

    def __init__(self, variant: Variant, future: Future | None = None, fmt=None, cache=None):
        self.variant, self.future, self.fmt, self.cache = variant, future, fmt, cache

    def done(self) -> bool:
        """Finished, with a result to take (not cancelled or interrupted by a stopped build)."""
        from edgekit.errors import SchedulerLost

        if self.future is None:
            return True
        return (self.future.done() and not self.future.cancelled()
                and not isinstance(self.future.exception(), (KeyboardInterrupt, SchedulerLost)))

    def result(self) -> Variant:
        if self.future is not None:
            # The future is dropped only once applied: Ctrl-C while waiting here must leave this
            # variant unfinished, not "done" with half its fields (partial results would show it).
            _apply(self.variant, self.fmt, self.future, self.cache)
            self.future = None
        return self.variant


def _apply(variant: Variant, fmt, future: Future, cache) -> None:
    """Copy the worker's answer onto the build's variant, or record why there is none."""
    from edgekit.errors import TaskFailed, WorkerDied

    variant.status, variant.reason = "ok", None
    try:
        answer = future.result()
    except (WorkerDied, TaskFailed, CancelledError) as exc:
        variant.fail(*failure(fmt, exc))
        return
    for name, value in answer["fields"].items():
        setattr(variant, name, Path(value) if name == "path" and value is not None else value)
    cache.events.extend(answer["events"])  # results.json `reused` and manifest.json see the worker's work


def failure(fmt, exc: BaseException) -> tuple[str, str]:
    """(stage, one line) for a task that got no answer from its worker."""
    from edgekit.errors import WorkerDied

    if isinstance(exc, WorkerDied):
        return crash_reason(fmt, exc)
    return "conversion", f"in its worker process: {exc or type(exc).__name__}"


def crash_reason(fmt, exc) -> tuple[str, str]:
    """(stage, one line) for a worker that died: ``the TFLite converter crashed (SIGSEGV); ...``."""
    title = getattr(fmt, "title", None) or fmt.name
    if exc.stage == "evaluate":
        return "runtime", f"the {title} runtime {exc.how()} while evaluating on the test split; other formats are unaffected"
    if exc.stage == "convert":
        return "conversion", f"the {title} converter {exc.how()}; other formats are unaffected"
    return "conversion", f"the worker process {exc.how()} while loading the model; other formats are unaffected"


class VariantBuilds:
    """The build's side: finishes cached variants at once, sends the others to the executor.

    Args:
        ctx: the build's context (its log and cache receive what the workers report).
        executor: where tasks run (``edgekit.executors.local``).
    """

    def __init__(self, ctx: BuildContext, executor, done_count=None):
        self.ctx, self.executor = ctx, executor
        #: counts each variant once it is finished (``edgekit.progress.Counter``), or None
        self.done_count = done_count
        self._scratch: Path | None = None
        self._inputs: BuildInputs | None = None
        self._saved: dict[int, Path] = {}

    def start(self, fmt, precision, model, name, parent, quantized, model_key: str, model_file: Path | None = None) -> Pending:
        """Begin one variant (``Exporter``'s ``start``): cached, or queued for a worker."""
        ctx, lines = self.ctx, []
        mark = len(ctx.cache.events)
        probe = _CacheOnly(ctx.cache)
        variant = timed_convert_and_evaluate(fmt, precision, model, name, parent, quantized, model_key,
                                       dataclasses.replace(ctx, log=lines.append, cache=probe))
        if not probe.missed:
            for line in lines:
                ctx.log(line)
            self._count()
            return Pending(variant)
        del ctx.cache.events[mark:]  # the worker redoes (and reports) what the probe found
        from edgekit.train.stage import keras_model

        model = keras_model(model)  # a model from the train cache is loaded for the first miss only
        task = VariantTask(fmt, precision, name, parent, quantized, model_key, self._model_file(model, model_file, quantized),
                           keras_flavour(model), self._build_inputs(), custom_layers(model))
        from edgekit.locks import Hold

        # Converting and evaluating use the CPU of the machine they run on: held shared there.
        future = self.executor.submit(run, task, on_message=self._on_message,
                                      hold=Hold(task=f"convert {variant.stem}", kind="convert"))
        future.add_done_callback(lambda done: self._log_failure(done, variant.stem, fmt))
        future.add_done_callback(lambda done: self._count())
        return Pending(variant, future, fmt, ctx.cache)

    def _count(self) -> None:
        if self.done_count is not None:
            self.done_count.add()

    def _on_message(self, kind: str, text: str) -> None:
        if kind == "log":
            self.ctx.log(text)

    def _log_failure(self, future: Future, stem: str, fmt) -> None:
        """The build log's line for a task that got no answer, when it happens (a variant that
        failed inside its worker logged its own line)."""
        from edgekit.errors import SchedulerLost

        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None and not isinstance(exc, (KeyboardInterrupt, SchedulerLost)):  # the build stops for those
            stage, text = failure(fmt, exc)
            self.ctx.log(f"[{'eval' if stage == 'runtime' else 'convert'}] {stem} FAILED: {stage} failed: {text}")

    def close(self) -> None:
        """Remove the build's scratch folder (the .npz and any model saved for the workers)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _folder(self) -> Path:
        if self._scratch is None:
            where = None
            if getattr(self.executor, "shared_scratch", False):  # workers elsewhere read it: under the shared cache
                where = self.ctx.cache.root / "scratch"
                where.mkdir(parents=True, exist_ok=True)
            self._scratch = Path(tempfile.mkdtemp(prefix="edgekit-build-", dir=where))
        return self._scratch

    def _build_inputs(self) -> BuildInputs:
        """Written once, at the first variant that needs a worker."""
        if self._inputs is None:
            ctx, data = self.ctx, self.ctx.data
            path = self._folder() / "data.npz"
            meta = {"class_names": list(data.class_names), "info": data.info, "task": data.task,
                    "output_tasks": dict(getattr(data, "output_tasks", None) or {})}
            # The validation split (at most VALIDATION_CAP samples, fewer of large inputs) for
            # per-layer quantization error and the int8-mixed search, which must never look at
            # the test split.
            cap = validation_cap(data.x_val)
            np.savez(path, x_calib=data.x_calib, x_test=data.x_test, y_test=data.y_test,
                     x_val=data.x_val[:cap], y_val=data.y_val[:cap],
                     baseline_outputs=np.asarray(ctx.baseline_outputs), meta=np.array(json.dumps(meta, default=str)))
            recipe = ctx.recipe
            self._inputs = BuildInputs(recipe, ctx.run_dir, path, ctx.data_key, ctx.versions, ctx.cache.root,
                                       ctx.cache.enabled, builder_import_dirs(recipe))
        return self._inputs

    def _model_file(self, model, given: Path | None, quantized: bool = False) -> Path:
        """The model as a file a worker can read: the one the build saved, else a copy saved now
        (HDF5 for QAT models, the one format they reload from; see compress/stage.py)."""
        if given is not None and Path(given).is_file():
            return Path(given)
        if id(model) not in self._saved:
            path = self._folder() / f"model-{len(self._saved)}{'.h5' if quantized else '.keras'}"
            model.save(path)
            self._saved[id(model)] = path
        return self._saved[id(model)]


#: the most bytes of validation inputs a worker receives (float32): 2000 samples of up to 128 KB
#: (VALIDATION_CAP), 445 of a 224x224x3 image; never fewer than the int8-mixed search ranks on
VALIDATION_BYTES = 256 << 20


def validation_cap(x_val) -> int:
    """How many validation samples travel to the workers: VALIDATION_CAP, fewer of large
    inputs (``VALIDATION_BYTES``), never fewer than ``edgekit.convert.mixed.RANK_SAMPLES``."""
    from edgekit.convert.mixed import RANK_SAMPLES

    # bytes per sample: float32 features, or every input's field of a structured batch
    sample = max(1, int(np.prod(np.shape(x_val)[1:], dtype=np.int64)) * np.dtype(getattr(x_val, "dtype", np.float32)).itemsize)
    return min(VALIDATION_CAP, max(RANK_SAMPLES, VALIDATION_BYTES // sample))


