"""Runs the stages of a build in order: data, train, compress, convert, evaluate, bench, report.

A failure inside one variant (compression, conversion, runtime, timing) marks that variant's
rows ``failed`` with a one-line reason and the build goes on; bad input stops at once.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit import environment, evaluate, report
from edgekit.cache import Cache, fingerprint, make_key
from edgekit.errors import EdgekitError, InputError, ModelError
from edgekit.formats import FORMATS
from edgekit.report import write_json
from edgekit.variants import BuildContext, Variant, convert_and_evaluate, evaluate_variant, format_metrics, one_line

Log = Callable[[str], None]


@dataclass
class BuildResult:
    results: dict[str, Any]
    run_dir: Path

    @property
    def failed(self) -> bool:
        return any(row["status"] == "failed" for row in self.results["rows"])


class Interrupted(EdgekitError):
    """Ctrl-C: partial results are written, and the conventional exit code of SIGINT."""

    exit_code = 130


@dataclass
class _State:
    """What a build has finished so far, so that Ctrl-C can still write it."""

    header: dict[str, Any] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)


def build(recipe, run_dir: Path, log: Log = print, cache: Cache | None = None, force: bool = False) -> BuildResult:
    """Run every stage of ``recipe`` and write results into ``run_dir``.

    Stage outputs come from ``cache`` when their keys are unchanged. On Ctrl-C the finished
    rows are written, the unfinished ones marked, and ``Interrupted`` is raised. ``run_dir``
    ends up holding this run only; a non-empty folder that is no run directory is refused
    unless ``force``.
    """
    cache = cache if cache is not None else Cache()
    cache.log = log  # a discarded cache entry is one line of the build log
    _prepare_run_dir(run_dir, force)
    state = _State()
    try:
        return _build(recipe, run_dir, log, cache, state)
    except KeyboardInterrupt:
        _write_partial(state, cache, recipe, run_dir)
        raise Interrupted(
            f"interrupted: partial results in {run_dir / 'results.json'} (unfinished rows marked); "
            "run the same command again to resume, finished stages are cached"
        ) from None


#: what a build writes into its run directory: a folder holding only these is a run directory
#: even without results.json (a build killed before it wrote one)
RUN_FILES = {"recipe.yaml", "artifacts", "model", "devices", "plots", "results.json", "manifest.json",
             "latency.json", "report.md", "report.html"}


def _prepare_run_dir(run_dir: Path, force: bool) -> None:
    """Refuse a folder that is not a run directory (unless ``force``); drop the device profiles
    of the previous run, which this one writes again for its own targets."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file; expected a folder for the run: choose another --out")
    if not run_dir.is_dir():
        return
    names = {p.name for p in run_dir.iterdir() if not p.name.endswith(".tmp")}
    is_run = not names or bool(names & {"results.json", "manifest.json"}) or names <= RUN_FILES
    if not is_run and not force:
        raise InputError(
            f"--out {run_dir} is a non-empty folder that is not an edgekit run directory (no results.json or "
            f"manifest.json); choose an empty or new folder, or pass --force to build into it anyway"
        )
    shutil.rmtree(run_dir / "devices", ignore_errors=True)


def _remove_stale_artifacts(run_dir: Path, variants: list[Variant]) -> None:
    """Delete what an earlier run left in artifacts/ that no row of this run points at."""
    keep = {f.resolve() for variant in variants for f in variant.files}
    folder = run_dir / "artifacts"
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.resolve() not in keep:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _check_outputs(run_dir: Path, variants: list[Variant]) -> None:
    """Every file an ok row points at must still be there (the run directory can be deleted or
    cleaned while the build runs; its rows would then describe nothing)."""
    missing = [f for v in variants if v.status == "ok" for f in v.files if not f.exists()]
    if missing:
        shown = ", ".join(str(f) for f in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise EdgekitError(
            f"the run directory {run_dir} lost files during the build (missing: {shown}); expected every artifact "
            "this build wrote to stay there: was the folder deleted or cleaned meanwhile? Run the build again"
        )


def _build(recipe, run_dir: Path, log: Log, cache: Cache, state: _State) -> BuildResult:
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "artifacts").mkdir(exist_ok=True)
    if recipe.path is not None:
        shutil.copyfile(recipe.path, run_dir / "recipe.yaml")
        from edgekit import devices  # the copy's device targets resolve inside the run directory

        devices.save_profiles(recipe.targets, devices.search_dirs(recipe.path), run_dir / "devices")

    from edgekit import data as data_stage

    # Data first: a bad data file fails in a second, before TensorFlow is even imported.
    log(f"[data] {recipe.data.source}")
    data = data_stage.load_dataset(recipe.data, recipe.seed, recipe.quantize.calibration_samples, task=recipe.task)
    data_key = fingerprint(data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test, data.x_calib)
    env = environment.collect()
    state.header = {
        "edgekit_version": env["packages"].get("edgekit", "unknown"),
        "recipe": {"name": recipe.name, "path": str(recipe.path) if recipe.path else None, "sha256": recipe.sha256},
        "environment": env,
        "task": recipe.task,
        "primary_metric": evaluate.PRIMARY_METRIC[recipe.task],
        "higher_is_better": evaluate.HIGHER_IS_BETTER[recipe.task],
        "data": {**data.info, "sha256": data_key},
        "benchmark": recipe.benchmark.model_dump(),
    }
    _configure_tensorflow(recipe.benchmark.threads)
    log(f"[data] train {len(data.x_train)}, val {len(data.x_val)}, test {len(data.x_test)}, "
        f"calibration {len(data.x_calib)} (from train), input {list(data.input_shape)}, {data.num_classes} classes")

    model, flavour, model_key = _fp32_model(recipe, data, data_key, env["packages"], run_dir, cache, log)
    baseline = _baseline(model, model_key, run_dir, recipe)
    baseline_outputs = evaluate_variant(baseline, data, None, recipe.task)
    log(f"[eval] keras-fp32: {format_metrics(baseline.metrics)}")
    state.variants.append(baseline)

    versions = {k: v for k, v in env["packages"].items() if k != "edgekit"}
    ctx = BuildContext(recipe, data, baseline_outputs, run_dir, log, cache, data_key, versions)
    exporter = _Exporter(ctx)
    state.variants += exporter.export(model, "base", None, False, model_key)
    state.models.append({"name": "base", "parent": None, "step": "train" if recipe.model.file is None else "load",
                         "key": model_key, "path": str(baseline.path), "keras_metrics": baseline.metrics})
    state.variants += _compressed_variants(model, model_key, ctx, exporter, state.models)

    from edgekit import rows as rows_stage
    from edgekit.train import describe as train_describe

    latencies, target_environments = rows_stage.benchmark(
        state.variants, data, recipe, log, baseline_outputs, cache=cache, rows=state.rows, latencies=state.latencies
    )
    rows = state.rows
    _check_outputs(run_dir, state.variants)
    _remove_stale_artifacts(run_dir, state.variants)
    results = {
        **state.header,
        "baseline": rows[0]["id"],
        "speedup_baseline": rows_stage.speedup_baseline(rows)["id"],
        "targets": target_environments,
        "latency_by_target": rows_stage.latency_by_target(rows),
        "model": {**train_describe(model), "keras": flavour, "source": recipe.model.source},
        "models": state.models,
        "not_produced": exporter.not_produced,
        "reused": cache.reused_by_stage(),
        "build_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    try:
        report.write(results, latencies, run_dir)
        _write_manifest(run_dir, results, state, cache)
    except OSError as exc:
        raise EdgekitError(
            f"could not write the results into {run_dir}: {exc.strerror or exc} ({exc.filename}); expected a "
            "writable run directory: check --out and run the build again"
        ) from None
    return BuildResult(results, run_dir)


def _write_partial(state: _State, cache: Cache, recipe, run_dir: Path) -> None:
    """results.json with the finished rows and every unfinished variant marked ``interrupted``."""
    from edgekit.rows import make_row
    from edgekit.targets import Measurement

    done = {row["id"].rsplit("@", 1)[0] for row in state.rows}
    target = recipe.targets[0]
    unfinished = Measurement("interrupted", "the build was interrupted before this row was measured")
    rows = list(state.rows) + [
        make_row(f"{variant.stem}@{target}", variant, target, unfinished, state.variants[0])
        for variant in state.variants if variant.stem not in done
    ]
    results = {**state.header, "interrupted": True, "models": state.models, "rows": rows, "reused": cache.reused_by_stage()}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "results.json", results)
    _write_manifest(run_dir, results, state, cache)


def _write_manifest(run_dir: Path, results: dict, state: _State, cache: Cache) -> None:
    """manifest.json: what produced each artifact, so any row can be traced back."""
    write_json(run_dir / "manifest.json", {
        "recipe": results.get("recipe"),
        "environment": results.get("environment"),
        "data_sha256": results.get("data", {}).get("sha256"),
        "cache": str(cache.root) if cache.enabled else None,
        "stages": cache.events,
        "models": state.models,
        "artifacts": [
            {"id": v.stem, "model": v.model, "parent": v.parent, "format": v.format, "precision": v.precision,
             "key": v.key, "files": [str(f) for f in v.files], "status": v.status}
            for v in state.variants
        ],
    })


def _configure_tensorflow(threads: int) -> None:
    import tensorflow as tf

    # Must happen before TensorFlow runs its first op; later calls raise RuntimeError.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def _fp32_model(recipe, data, data_key: str, packages: dict, run_dir: Path, cache: Cache, log: Log):
    """Train the recipe's model (or take it from the cache), or load its file.

    Returns:
        (model, keras flavour, model key).
    """
    from edgekit import train as train_stage

    history: dict[str, list[float]] = {}
    if recipe.model.file is not None:
        log(f"[model] loading {recipe.model.file}")
        model, flavour = train_stage.load_model_file(recipe.model.file, recipe.model.safe_mode)
        train_stage.check_fits(model, data)
        if flavour == "keras3" and recipe.compress:
            raise ModelError(
                f"model.file: {recipe.model.file} is a Keras 3 model; pruning, clustering and QAT need a Keras 2 "
                "(tf_keras) model: remove the compress section or rebuild the model with `import tf_keras as keras`"
            )
        key = make_key("load", file=_content_hash(recipe.model.file), safe_mode=recipe.model.safe_mode)
        write_json(run_dir / "model" / "history.json", history)
        train_stage.save_model(model, run_dir / "model")
        return model, flavour, key
    key = make_key(
        "train", model=recipe.model.model_dump(mode="json"), builder=_builder_source(recipe), train=recipe.train.model_dump(),
        seed=recipe.seed, task=recipe.task, data=data_key, versions=_versions(packages, "tensorflow", "tf-keras", "keras"),
    )
    names = ("model.keras", "history.json")
    model_dir = run_dir / "model"

    def load(folder: Path):
        model = _load_keras(folder / "model.keras")
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in names:  # the very files the first build wrote
            shutil.copyfile(folder / name, model_dir / name)
        return model

    def compute():
        log(f"[train] {recipe.model.source}, up to {recipe.train.epochs} epochs")
        model, history = train_stage.train(recipe, data, log=log)
        write_json(model_dir / "history.json", history)
        train_stage.save_model(model, model_dir)
        return model

    def store(model, folder: Path) -> None:
        for name in names:
            shutil.copyfile(model_dir / name, folder / name)

    model, reused = cache.fetch("train", key, "base", load=load, compute=compute, store=store)
    if reused:
        log(f"[train] {recipe.model.source}: trained model reused from the cache")
    return model, "tf_keras", key


def _load_keras(path: Path):
    """A Keras model saved by a stage (raises when it cannot be loaded)."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    # QAT models need tfmot's layer classes in scope to deserialise.
    with tfmot.quantization.keras.quantize_scope():
        return tf_keras.models.load_model(path, compile=False)


def _content_hash(path: Path) -> str:
    from edgekit.cache import fingerprint as array_fingerprint
    import numpy as np

    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    return array_fingerprint(*(np.frombuffer(f.read_bytes(), dtype=np.uint8) for f in files))


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


def _versions(packages: dict, *names: str) -> dict[str, str]:
    return {name: packages.get(name, "") for name in names}


def _baseline(model, model_key: str, run_dir: Path, recipe) -> Variant:
    from edgekit.runtimes import keras as keras_runtime
    from edgekit.weights import gzip_size, summarize

    baseline = Variant(format="keras", precision="fp32", path=run_dir / "model" / "model.keras", key=model_key)
    baseline.session = keras_runtime.open_session(model, recipe.benchmark.threads)
    baseline.runtime, baseline.settings = baseline.session.runtime, dict(baseline.session.settings)
    baseline.gzip_bytes = gzip_size(baseline.files)
    baseline.weights = summarize(model.get_weights())
    return baseline


class _Exporter:
    """Converts one Keras model to every format and precision of the recipe."""

    def __init__(self, ctx: BuildContext):
        self.ctx = ctx
        self.recipe = ctx.recipe
        self.not_produced: list[dict[str, str]] = []

    def combinations(self, name: str, quantized: bool, precisions=None):
        """(format, precision) pairs to build; the others are recorded in ``not_produced``."""
        for fmt_name in self.recipe.export.formats:
            fmt = FORMATS[fmt_name]
            for precision in precisions or self.recipe.quantize.precisions:
                skipped = {"id": Variant(format=fmt.name, precision=precision, model=name).stem,
                           "model": name, "format": fmt.name, "precision": precision}
                if precision not in fmt.precisions:
                    self.not_produced.append({**skipped, "reason": f"{fmt.name} has no {precision} converter"})
                elif quantized and precision != "int8":
                    self.not_produced.append({**skipped, "reason": "QAT models are exported at int8 only"})
                else:
                    yield fmt, precision

    def export(self, model, name: str, parent: str | None, quantized: bool, model_key: str, precisions=None) -> list[Variant]:
        return [
            convert_and_evaluate(fmt, precision, model, name, parent, quantized, model_key, self.ctx)
            for fmt, precision in self.combinations(name, quantized, precisions)
        ]

    def failed(self, step, reason: str) -> list[Variant]:
        """Failed rows for every artifact an exported step would have made."""
        if not step.export:
            return []
        variants = []
        for fmt, precision in self.combinations(step.name, step.quantized, step.precisions):
            variant = Variant(format=fmt.name, precision=precision, model=step.name, parent=step.parent)
            variant.fail("compression", reason)
            variants.append(variant)
        return variants


def _compressed_variants(base_model, base_key: str, ctx: BuildContext, exporter: _Exporter, models: list) -> list[Variant]:
    """Make each compressed model from its parent (or take it from the cache), then export it."""
    recipe, data, log, cache = ctx.recipe, ctx.data, ctx.log, ctx.cache
    if not recipe.compress:
        return []
    from edgekit import compress, train as train_stage

    keras_models = {"base": (base_model, base_key)}
    variants: list[Variant] = []
    for step in compress.plan(recipe.compress):
        info = {"name": step.name, "parent": step.parent, "step": step.kind, "preserve": step.preserve,
                "exported": step.export, "spec": step.spec.model_dump()}
        models.append(info)
        if step.parent not in keras_models:
            info["status"] = "failed"
            variants += exporter.failed(step, f"its parent {step.parent} failed")
            continue
        parent, parent_key = keras_models[step.parent]
        key = make_key("compress", kind=step.kind, spec=step.spec.model_dump(), preserve=step.preserve, parent=parent_key,
                       data=ctx.data_key, seed=recipe.seed, batch_size=recipe.train.batch_size, learning_rate=recipe.train.learning_rate,
                       versions=_versions(ctx.versions, "tensorflow", "tf-keras", "tensorflow-model-optimization"))
        info["key"] = key
        try:
            model, reused = cache.fetch(
                "compress", key, step.name, load=lambda folder: _load_keras(folder / "model.keras"),
                compute=lambda step=step, parent=parent: compress.make(step, parent, data, recipe, log),
                store=lambda m, folder: m.save(folder / "model.keras"),
            )
        except Exception as exc:  # noqa: BLE001 - one failed variant must not stop the build
            info.update(status="failed", reason=one_line(exc))
            log(f"[compress] {step.name} FAILED: {info['reason']}")
            variants += exporter.failed(step, one_line(exc))
            continue
        if reused:
            log(f"[compress] {step.name}: reused from the cache")
        keras_models[step.name] = (model, key)
        info["keras_metrics"] = evaluate.metrics(recipe.task, train_stage.predict(model, data.x_test), data.y_test, x=data.x_test)
        log(f"[compress] {step.name} (keras): {format_metrics(info['keras_metrics'])}")
        if step.export:
            variants += exporter.export(model, step.name, step.parent, step.quantized, key, step.precisions)
    return variants
