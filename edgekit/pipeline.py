"""Runs the stages of a build in order: data, train, convert, evaluate, bench, report.

A failure inside one variant (conversion, runtime, timing) marks that variant's rows
``failed`` with a one-line reason and the build goes on; bad input stops at once.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit import environment, evaluate, report
from edgekit.report import write_json
from edgekit.formats import FORMATS

Log = Callable[[str], None]


@dataclass
class Variant:
    """One model in one format and precision, opened in its runtime (or why it is not)."""

    format: str
    precision: str
    model: str = "base"
    path: Path | None = None
    session: Any = None
    status: str = "ok"
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    runtime: str | None = None

    @property
    def stem(self) -> str:
        return f"{self.format}-{self.precision}"

    @property
    def files(self) -> list[Path]:
        """Every file of the artifact (OpenVINO's .xml comes with a .bin)."""
        if self.path is None:
            return []
        return FORMATS[self.format].files(self.path) if self.format in FORMATS else [self.path]

    @property
    def size_bytes(self) -> int | None:
        files = [f for f in self.files if f.exists()]
        return sum(f.stat().st_size for f in files) if files else None

    def fail(self, stage: str, exc: BaseException) -> None:
        self.status = "failed"
        self.reason = f"{stage} failed: {one_line(exc)}"
        self.session = None


@dataclass
class BuildResult:
    results: dict[str, Any]
    run_dir: Path

    @property
    def failed(self) -> bool:
        return any(row["status"] == "failed" for row in self.results["rows"])


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def build(recipe, run_dir: Path, log: Log = print) -> BuildResult:
    """Run every stage of ``recipe`` and write results into ``run_dir``."""
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "artifacts").mkdir(exist_ok=True)
    if recipe.path is not None:
        shutil.copyfile(recipe.path, run_dir / "recipe.yaml")

    from edgekit import data as data_stage

    # Data first: a bad data file fails in a second, before TensorFlow is even imported.
    log(f"[data] {recipe.data.source}")
    data = data_stage.load_dataset(recipe.data, recipe.seed, recipe.quantize.calibration_samples)
    _configure_tensorflow(recipe.benchmark.threads)
    from edgekit import train as train_stage
    from edgekit.runtimes import keras as keras_runtime

    log(f"[data] train {len(data.x_train)}, val {len(data.x_val)}, test {len(data.x_test)}, "
        f"calibration {len(data.x_calib)} (from train), input {list(data.input_shape)}, {data.num_classes} classes")

    history: dict[str, list[float]] = {}
    if recipe.model.file is not None:
        log(f"[model] loading {recipe.model.file}")
        model, flavour = train_stage.load_model_file(recipe.model.file, recipe.model.safe_mode)
        train_stage.check_fits(model, data)
    else:
        log(f"[train] {recipe.model.source}, up to {recipe.train.epochs} epochs")
        model, history = train_stage.train(recipe, data, log=log)
        flavour = "tf_keras"
    model_path = train_stage.save_model(model, run_dir / "model")
    write_json(run_dir / "model" / "history.json", history)

    baseline = Variant(format="keras", precision="fp32", path=model_path)
    baseline.session = keras_runtime.open_session(model, recipe.benchmark.threads)
    baseline.runtime, baseline.settings = baseline.session.runtime, dict(baseline.session.settings)
    baseline_outputs = baseline.session.predict(data.x_test)
    baseline.metrics = evaluate.metrics(recipe.task, baseline_outputs, data.y_test)
    baseline.parity = evaluate.parity(baseline_outputs, baseline_outputs, recipe.task)
    log(f"[eval] keras-fp32: {_fmt_metrics(baseline.metrics)}")

    variants = [baseline]
    for fmt_name in recipe.export.formats:
        for precision in recipe.quantize.precisions:
            variant = _convert_and_evaluate(
                FORMATS[fmt_name], precision, model, data, baseline_outputs, recipe, run_dir, log
            )
            variants.append(variant)

    rows, latencies = _benchmark(variants, data, recipe, log)
    results = {
        "edgekit_version": environment.collect()["packages"].get("edgekit", "unknown"),
        "recipe": {"name": recipe.name, "path": str(recipe.path) if recipe.path else None, "sha256": recipe.sha256},
        "environment": environment.collect(),
        "baseline": rows[0]["id"],
        "speedup_baseline": rows[0]["id"],
        "task": recipe.task,
        "primary_metric": evaluate.PRIMARY_METRIC[recipe.task],
        "data": data.info,
        "model": {**train_stage.describe(model), "keras": flavour, "source": recipe.model.source},
        "benchmark": recipe.benchmark.model_dump(),
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


def _convert_and_evaluate(fmt, precision, model, data, baseline_outputs, recipe, run_dir, log) -> Variant:
    variant = Variant(format=fmt.name, precision=precision)
    if precision not in fmt.precisions:
        variant.status, variant.reason = "skipped", f"{fmt.name} has no {precision} converter"
        return variant
    variant.path = run_dir / "artifacts" / f"{variant.stem}{fmt.suffix}"
    log(f"[convert] {variant.stem}")
    options = getattr(recipe.export, fmt.name).model_dump()
    try:
        variant.settings = fmt.load_converter()(model, variant.path, precision, data.x_calib, options)
    except Exception as exc:  # noqa: BLE001 - one format failing must not stop the others
        variant.fail("conversion", exc)
        log(f"[convert] {variant.stem} FAILED: {variant.reason}")
        return variant
    try:
        variant.session = fmt.load_runtime()(variant.path, recipe.benchmark.threads, options)
        variant.runtime = variant.session.runtime
        variant.settings.update(variant.session.settings)
        outputs = variant.session.predict(data.x_test)
        variant.metrics = evaluate.metrics(recipe.task, outputs, data.y_test)
        variant.parity = evaluate.parity(outputs, baseline_outputs, recipe.task)
    except Exception as exc:  # noqa: BLE001
        variant.fail("runtime", exc)
        log(f"[eval] {variant.stem} FAILED: {variant.reason}")
        return variant
    log(f"[eval] {variant.stem}: {_fmt_metrics(variant.metrics)}")
    return variant


def _benchmark(variants: list[Variant], data, recipe, log) -> tuple[list[dict], dict[str, list[float]]]:
    from edgekit.targets import Measurement, TARGETS

    spec = recipe.benchmark
    samples = list(data.x_test[: spec.inputs])
    rows, latencies = [], {}
    baseline = variants[0]
    for target_name in recipe.targets:
        target = TARGETS[target_name]
        for variant in variants:
            if not target.supports(variant):
                continue
            row_id = f"{variant.stem}@{target_name}"
            if variant.status != "ok":
                measurement = Measurement(variant.status, variant.reason)
            else:
                log(f"[bench] {row_id}")
                try:
                    measurement = target.measure(variant, spec, samples)
                except Exception as exc:  # noqa: BLE001
                    measurement = Measurement("failed", f"benchmark failed: {one_line(exc)}")
            if measurement.latencies_ms:
                latencies[row_id] = measurement.latencies_ms
            rows.append(_row(row_id, variant, target_name, measurement, baseline))
    _add_speedups(rows)
    return rows, latencies


def _row(row_id: str, variant: Variant, target: str, m, baseline: Variant) -> dict[str, Any]:
    from edgekit.bench import summarize

    ok = m.status == "ok"
    return {
        "id": row_id,
        "model": variant.model,
        "format": variant.format,
        "precision": variant.precision,
        "target": target,
        "status": m.status,
        "reason": m.reason,
        "path": str(variant.path) if variant.path else None,
        "size_bytes": variant.size_bytes,
        "metrics": variant.metrics if variant.status == "ok" else {},
        "delta": evaluate.delta(variant.metrics, baseline.metrics) if variant.status == "ok" else {},
        "parity": variant.parity if variant.status == "ok" else {},
        "latency_ms": summarize(m.latencies_ms) if ok and m.latencies_ms else None,
        "speedup_vs_baseline": None,
        "runtime": variant.runtime,
        "settings": {**variant.settings, **(m.settings or {})},
        "notes": [],
    }


def _add_speedups(rows: list[dict]) -> None:
    """Speedup against the baseline row, and a note wherever int8 is slower than fp32."""
    base = rows[0]["latency_ms"]
    by_key = {(r["model"], r["format"], r["precision"], r["target"]): r for r in rows}
    for row in rows:
        lat = row["latency_ms"]
        if not lat:
            continue
        if base:
            row["speedup_vs_baseline"] = base["p50"] / lat["p50"]
        fp32 = by_key.get((row["model"], row["format"], "fp32", row["target"]))
        if row["precision"] != "fp32" and fp32 and fp32["latency_ms"]:
            ratio = lat["p50"] / fp32["latency_ms"]["p50"]
            row["vs_fp32_same_runtime"] = 1 / ratio
            if ratio > 1:
                row["notes"].append(
                    f"{row['precision']} slower than fp32 in {row['runtime'] or row['format']}: {ratio:.2f}x"
                )


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
