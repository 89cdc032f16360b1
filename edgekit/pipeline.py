"""Runs the stages of a build in order: data, train, compress, convert, evaluate, bench, report.

A failure inside one variant (compression, conversion, runtime, timing) marks that variant's
rows ``failed`` with a one-line reason and the build goes on; bad input stops at once.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgekit import environment, evaluate, report
from edgekit.errors import ModelError
from edgekit.formats import FORMATS
from edgekit.report import write_json
from edgekit.variants import Variant, convert_and_evaluate, evaluate_variant, format_metrics, one_line

Log = Callable[[str], None]


@dataclass
class BuildResult:
    results: dict[str, Any]
    run_dir: Path

    @property
    def failed(self) -> bool:
        return any(row["status"] == "failed" for row in self.results["rows"])


def build(recipe, run_dir: Path, log: Log = print) -> BuildResult:
    """Run every stage of ``recipe`` and write results into ``run_dir``."""
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
    _configure_tensorflow(recipe.benchmark.threads)
    log(f"[data] train {len(data.x_train)}, val {len(data.x_val)}, test {len(data.x_test)}, "
        f"calibration {len(data.x_calib)} (from train), input {list(data.input_shape)}, {data.num_classes} classes")

    model, flavour = _fp32_model(recipe, data, run_dir, log)
    baseline = _baseline(model, run_dir, data, recipe)
    baseline_outputs = evaluate_variant(baseline, data, None, recipe.task)
    log(f"[eval] keras-fp32: {format_metrics(baseline.metrics)}")

    exporter = _Exporter(recipe, data, baseline_outputs, run_dir, log)
    variants = [baseline, *exporter.export(model, "base", None, quantized=False)]
    models = [{"name": "base", "parent": None, "step": "train" if recipe.model.file is None else "load",
               "path": str(baseline.path), "keras_metrics": baseline.metrics}]
    variants += _compressed_variants(model, recipe, data, exporter, models, run_dir, log)

    from edgekit import rows as rows_stage
    from edgekit.train import describe as train_describe

    rows, latencies, target_environments = rows_stage.benchmark(variants, data, recipe, log, baseline_outputs)
    env = environment.collect()
    results = {
        "edgekit_version": env["packages"].get("edgekit", "unknown"),
        "recipe": {"name": recipe.name, "path": str(recipe.path) if recipe.path else None, "sha256": recipe.sha256},
        "environment": env,
        "baseline": rows[0]["id"],
        "speedup_baseline": rows_stage.speedup_baseline(rows)["id"],
        "targets": target_environments,
        "latency_by_target": rows_stage.latency_by_target(rows),
        "task": recipe.task,
        "primary_metric": evaluate.PRIMARY_METRIC[recipe.task],
        "higher_is_better": evaluate.HIGHER_IS_BETTER[recipe.task],
        "data": data.info,
        "model": {**train_describe(model), "keras": flavour, "source": recipe.model.source},
        "models": models,
        "benchmark": recipe.benchmark.model_dump(),
        "not_produced": exporter.not_produced,
        "build_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    report.write(results, latencies, run_dir)
    return BuildResult(results, run_dir)


def _configure_tensorflow(threads: int) -> None:
    import tensorflow as tf

    # Must happen before TensorFlow runs its first op; later calls raise RuntimeError.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def _fp32_model(recipe, data, run_dir: Path, log: Log):
    """Train the recipe's model, or load its file; returns (model, keras flavour)."""
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
    else:
        log(f"[train] {recipe.model.source}, up to {recipe.train.epochs} epochs")
        model, history = train_stage.train(recipe, data, log=log)
        flavour = "tf_keras"
    write_json(run_dir / "model" / "history.json", history)
    return model, flavour


def _baseline(model, run_dir: Path, data, recipe) -> Variant:
    from edgekit import train as train_stage
    from edgekit.runtimes import keras as keras_runtime
    from edgekit.weights import gzip_size, keras_weights, summarize

    baseline = Variant(format="keras", precision="fp32", path=train_stage.save_model(model, run_dir / "model"))
    baseline.session = keras_runtime.open_session(model, recipe.benchmark.threads)
    baseline.runtime, baseline.settings = baseline.session.runtime, dict(baseline.session.settings)
    baseline.gzip_bytes = gzip_size(baseline.files)
    baseline.weights = summarize(keras_weights(model))
    return baseline


class _Exporter:
    """Converts one Keras model to every format and precision of the recipe."""

    def __init__(self, recipe, data, baseline_outputs, run_dir: Path, log: Log):
        self.recipe, self.data, self.baseline_outputs, self.run_dir, self.log = recipe, data, baseline_outputs, run_dir, log
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

    def export(self, model, name: str, parent: str | None, quantized: bool, precisions=None) -> list[Variant]:
        return [
            convert_and_evaluate(fmt, precision, model, name, parent, quantized, self.data,
                                 self.baseline_outputs, self.recipe, self.run_dir, self.log)
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


def _compressed_variants(base_model, recipe, data, exporter: _Exporter, models: list, run_dir: Path, log: Log) -> list[Variant]:
    """Make each compressed model from its parent, then export it like the base model."""
    if not recipe.compress:
        return []
    from edgekit import compress, train as train_stage

    keras_models = {"base": base_model}
    variants: list[Variant] = []
    for step in compress.plan(recipe.compress):
        info = {"name": step.name, "parent": step.parent, "step": step.kind, "preserve": step.preserve,
                "exported": step.export, "spec": step.spec.model_dump()}
        models.append(info)
        parent = keras_models.get(step.parent)
        if parent is None:
            info["status"] = "failed"
            variants += exporter.failed(step, f"its parent {step.parent} failed")
            continue
        try:
            model = compress.make(step, parent, data, recipe, log)
        except Exception as exc:  # noqa: BLE001 - one failed variant must not stop the build
            info.update(status="failed", reason=one_line(exc))
            log(f"[compress] {step.name} FAILED: {info['reason']}")
            variants += exporter.failed(step, one_line(exc))
            continue
        keras_models[step.name] = model
        info["keras_metrics"] = evaluate.metrics(recipe.task, train_stage.predict(model, data.x_test), data.y_test, x=data.x_test)
        log(f"[compress] {step.name} (keras): {format_metrics(info['keras_metrics'])}")
        if step.export:
            variants += exporter.export(model, step.name, step.parent, step.quantized, step.precisions)
    return variants

