"""The train stage: the fp32 Keras model of a recipe (trained, or read from its file), cached
under a key of what made it, handed to later stages as a ``ModelHandle``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.cache import make_key, source_hash
from edgekit.errors import ModelError, one_line
from edgekit.models.files import load_model_file, save_model
from edgekit.report import write_json
from edgekit.train.fit import check_fits, model_inputs, model_output, train


def fp32_model(recipe, data, data_key: str, packages: dict, run_dir: Path, cache, log, on_train=None,
               tensorboard: bool = False):
    """The train stage: train the recipe's model (or take it from the cache), or load its file.

    ``tensorboard``: training writes TensorBoard logs into ``run_dir/tensorboard/<model>``, named
    after the model (kept in the cache entry and copied back when it is reused:
    ``edgekit.train.tensorboard``); an earlier run's logs in ``run_dir/tensorboard`` are removed
    either way.

    Returns:
        (``ModelHandle`` of the model, keras flavour, model key). A model from the cache is
        loaded only when a later stage asks for it (``ModelHandle.get``).
    """
    from edgekit.train import tensorboard as tensorboard_logs

    history: dict[str, list[float]] = {}
    shutil.rmtree(run_dir / tensorboard_logs.TENSORBOARD_DIR, ignore_errors=True)  # this run writes its own
    name = tensorboard_logs.log_name(recipe.model.source)
    log_dir = tensorboard_logs.model_dir(run_dir / tensorboard_logs.TENSORBOARD_DIR, name) if tensorboard else None
    if tensorboard:
        tensorboard_logs.say_if_missing(log)
    if recipe.model.file is not None:
        from edgekit.models.files import class_sources, subclassed_layer
        from edgekit.models.saved_model import is_signature_model

        log(f"[model] loading {recipe.model.file}")
        configure_tensorflow(recipe.train.resolved_threads())  # compressed models fine-tune on these
        import_dirs = (recipe.path.parent.resolve(),) if recipe.path else ()
        shape = tuple(recipe.model.input_shape) if recipe.model.input_shape else data.input_shape
        model, flavour = load_model_file(recipe.model.file, recipe.model.safe_mode,
                                         None if isinstance(shape, dict) else shape, import_dirs, log=log)
        check_fits(model, data, recipe.model.input_shape)
        several = bool(data.x_train.dtype.names) or len(model.outputs) > 1  # each output scored on its own
        output = None if several else model_output(model, recipe.task, data.x_train)
        if output is not None and output.from_logits:
            tuned = ": compressed models fine-tune with from_logits=True" if recipe.compress else ""
            log(f"[model] the model outputs logits ({output.why}){tuned}")
        if several and recipe.compress:
            raise ModelError(f"model.file: {recipe.model.file} has several inputs or outputs; pruning, clustering and QAT "
                             "fine-tune on one task loss: remove the compress section (every format and precision "
                             "still converts and is measured per output)")
        if flavour == "keras3" and recipe.compress and is_signature_model(model):
            raise ModelError(
                f"model.file: {recipe.model.file} is a TensorFlow SavedModel without a Keras model (only its serving "
                "signature); pruning, clustering and QAT need a tf_keras model's layers: remove the compress section, "
                "or give the tf_keras model itself (model.save(\"model.keras\"))"
            )
        if recipe.compress and (inner := subclassed_layer(model)):
            raise ModelError(
                f"model.file: {recipe.model.file} holds a subclassed model ({inner}), one opaque layer to edgekit; pruning, "
                "clustering and QAT need a functional or Sequential tf_keras model's own layers: remove the compress "
                "section, or build the model with the functional API"
            )
        if flavour == "keras3" and recipe.compress:
            raise ModelError(
                f"model.file: {recipe.model.file} is a Keras 3 model; pruning, clustering and QAT need a Keras 2 "
                "(tf_keras) model: remove the compress section or rebuild the model with `import tf_keras as keras`"
            )
        # A subclassed model's class is code outside the file: its module's source is part of the key.
        key = make_key("load", file=_content_hash(recipe.model.file), safe_mode=recipe.model.safe_mode,
                       **({"code": class_sources(model)} if not recipe.model.safe_mode else {}))
        write_json(run_dir / "model" / "history.json", history)
        try:
            saved = save_model(model, run_dir / "model")
        except (NotImplementedError, TypeError, ValueError) as exc:  # a subclassed class without get_config
            raise ModelError(f"model.file: {recipe.model.file}: the loaded model cannot be saved for the conversion "
                             f"workers ({one_line(exc, 200)}); give its class a get_config() that returns its "
                             "constructor arguments, or save it as a functional model") from None
        return ModelHandle(saved, model=model), flavour, key
    threads = recipe.train.resolved_threads()
    key = make_key(
        "train", model=recipe.model.model_dump(mode="json"), builder=_builder_source(recipe),
        train={**recipe.train.model_dump(), "threads": threads},  # the number, not null: it differs per machine
        seed=recipe.seed, task=recipe.task, data=data_key, versions=versions_of(packages, "tensorflow", "tf-keras", "keras"),
        code=_train_code(recipe),
        # files named in model.params (a weights .h5): their content, not only their path
        files={k: _content_hash(Path(v)) for k, v in recipe.model.params.items() if isinstance(v, str) and Path(v).is_file()},
    )
    from edgekit.data.in_model import INFO_KEY, RECORD_FILE

    # what the builder's first layers expect (edgekit.data.in_model): a cached rebuild feeds it unloaded
    names = ("model.keras", "history.json", RECORD_FILE)
    model_dir = run_dir / "model"

    def load(folder: Path) -> ModelHandle:
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in names:  # the very files the first build wrote (verified by the cache)
            shutil.copyfile(folder / name, model_dir / name)
        tensorboard_logs.restore(folder, log_dir, log, name)  # the logs of the training that made it
        # Loaded only when a later stage needs the model itself (a cache miss downstream): a
        # fully cached rebuild never imports TensorFlow.
        return ModelHandle(model_dir / "model.keras", lambda: load_for_stage(model_dir / "model.keras", threads))

    def compute() -> ModelHandle:
        if on_train is not None:  # e.g. start the worker that will convert, while this trains
            on_train()
        configure_tensorflow(threads)  # before TensorFlow's first op, which fixes its threads for good
        log(f"[train] {recipe.model.source}, up to {recipe.train.epochs} epochs, {threads} thread(s)")
        model, history = train(recipe, data, log=log, callbacks=tensorboard_logs.callbacks(log_dir))
        write_json(model_dir / "history.json", history)
        write_json(model_dir / RECORD_FILE, data.info.get(INFO_KEY) or {"inputs": []})
        save_model(model, model_dir)
        return ModelHandle(model_dir / "model.keras", model=model)

    def store(handle: ModelHandle, folder: Path) -> None:
        for name in names:
            shutil.copyfile(model_dir / name, folder / name)
        tensorboard_logs.keep(log_dir, folder)

    handle, reused = cache.fetch("train", key, "base", load=load, compute=compute, store=store)
    if reused:
        log(f"[train] {recipe.model.source}: trained model reused from the cache")
    if "inputs" not in data.info and "inputs" in model_inputs(recipe, data).info:
        # The latent draws follow from the seed, the model's params (in this key) and the split
        # sizes (in the data key): every later stage's key still names its inputs.
        shown = data.info["inputs"]
        log(f"[data] {recipe.model.arch} takes {shown['kind']} inputs of size {shown['size']} "
            f"({shown['distribution']}, seeded): test {len(data.x_test)}, calibration {len(data.x_calib)}")
    return handle, "tf_keras", key


class ModelHandle:
    """A stage's Keras model, loaded on first use (``get``): a stage whose outputs all come from
    the cache never loads it, and a build that loads no model never imports TensorFlow.

    Args:
        path: the model's file (what the workers read; the baseline row's artifact).
        load: returns the model; called at most once.
        model: the model itself, when it is in memory already (just trained or loaded).
    """

    def __init__(self, path: Path, load: Callable[[], Any] | None = None, model: Any = None):
        self.path = Path(path)
        self._load = load
        self._model = model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self):
        if self._model is None:
            if self._load is None:
                raise RuntimeError(f"no model and no way to load it: {self.path}")
            self._model = self._load()
        return self._model

    def __repr__(self) -> str:
        return f"ModelHandle({str(self.path)!r}, loaded={self.loaded})"


def keras_model(model):
    """The Keras model itself, from a model or a ``ModelHandle`` (loading it if needed)."""
    return model.get() if isinstance(model, ModelHandle) else model


#: the intra-op threads this process set TensorFlow to (None: not set by edgekit)
_TF_THREADS: int | None = None


def configure_tensorflow(threads: int, if_unset: bool = False) -> int:
    """Import TensorFlow and set its intra-op threads to ``threads`` (inter-op: 1), unless it has
    run an op already (it keeps its threads for good then), or ``if_unset`` and edgekit set them
    before. Returns the intra-op threads TensorFlow runs with."""
    global _TF_THREADS
    import tensorflow as tf

    if not (if_unset and _TF_THREADS is not None):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            _TF_THREADS = threads
        except RuntimeError:  # TensorFlow already ran an op
            pass
    return tensorflow_threads()


def tensorflow_threads() -> int | None:
    """The intra-op threads TensorFlow has in this process; None when it is not imported."""
    import os
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not hasattr(tf, "config"):
        return None
    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


def load_for_stage(path: Path, threads: int):
    """A stage's saved model, TensorFlow set to the training's threads unless set already (a
    compressed model may fine-tune from it)."""
    configure_tensorflow(threads, if_unset=True)
    return load_stage_model(path)


def load_stage_model(path: Path):
    """A Keras model saved by a stage (raises when it cannot be loaded)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    # QAT models need tfmot's layer classes in scope to deserialise.
    with tfmot.quantization.keras.quantize_scope():
        return tf_keras.models.load_model(path, compile=False)


def _content_hash(path: Path) -> str:
    import numpy as np

    from edgekit.cache import fingerprint as array_fingerprint

    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    return array_fingerprint(*(np.frombuffer(f.read_bytes(), dtype=np.uint8) for f in files))


def _train_code(recipe) -> str:
    """Hash of the code that trains the recipe's model: this module and the fitting
    (``edgekit.train.fit``), the task table (losses, metrics) and, for a zoo model, its
    builder's module and the zoo's shared layers (a ``model.python`` builder is keyed by its own
    source, ``_builder_source``)."""
    from edgekit.models import ZOO

    builder = [ZOO[recipe.model.arch].__module__, "edgekit.models._common"] if recipe.model.arch else []
    return source_hash(__name__, "edgekit.train.fit", "edgekit.tasks", "edgekit.models.outputs", *builder)


def _builder_source(recipe) -> str | None:
    """The source of a ``model.python`` builder module, so editing it retrains."""
    if not recipe.model.python:
        return None
    import importlib.util
    import sys

    module = recipe.model.python.partition(":")[0]
    base = str(recipe.path.parent) if recipe.path else None
    sys.path.insert(0, base) if base else None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    finally:
        if base:
            sys.path.remove(base)
    origin = Path(spec.origin) if spec and spec.origin and Path(spec.origin).is_file() else None
    return origin.read_text() if origin else None


def versions_of(packages: dict, *names: str) -> dict[str, str]:
    return {name: packages.get(name, "") for name in names}
