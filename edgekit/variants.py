"""A variant is one Keras model in one format and precision, converted, opened in its runtime
and evaluated on the test split; or the reason it is not."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit import evaluate, weights
from edgekit.formats import FORMATS


@dataclass
class Variant:
    """One artifact in its runtime (or the Keras model itself for the baseline)."""

    format: str
    precision: str
    model: str = "base"
    parent: str | None = None
    path: Path | None = None
    session: Any = None
    status: str = "ok"
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    runtime: str | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    gzip_bytes: int | None = None
    #: cache key of what this variant is (its artifact, or the Keras model for the baseline)
    key: str | None = None
    #: opens the runtime session when it is first needed (a cached evaluation needs none)
    opener: Callable[[], Any] | None = field(default=None, repr=False)

    def ensure_session(self) -> None:
        if self.session is None and self.opener is not None:
            self.session = self.opener()

    @property
    def stem(self) -> str:
        """Row id without the target: ``tflite-int8`` for the base model, ``pruned80-tflite-int8`` otherwise."""
        prefix = "" if self.model == "base" else f"{self.model}-"
        return f"{prefix}{self.format}-{self.precision}"

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

    def fail(self, stage: str, exc: BaseException | str) -> None:
        self.status = "failed"
        self.reason = f"{stage} failed: {exc if isinstance(exc, str) else one_line(exc)}"
        self.session = None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def score(outputs, data, baseline_outputs, task: str) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, parity) of test-split outputs, wherever they were produced."""
    return (evaluate.metrics(task, outputs, data.y_test, x=data.x_test),
            evaluate.parity(outputs, baseline_outputs, task))


def evaluate_variant(variant: Variant, data, baseline_outputs, task: str):
    """Run the test split through the variant's session; fill metrics and parity (against
    ``baseline_outputs``, or against itself for the baseline)."""
    outputs = variant.session.predict(data.x_test)
    baseline_outputs = outputs if baseline_outputs is None else baseline_outputs
    variant.metrics, variant.parity = score(outputs, data, baseline_outputs, task)
    return outputs


@dataclass
class BuildContext:
    """What every conversion of a build shares."""

    recipe: Any
    data: Any
    baseline_outputs: Any
    run_dir: Path
    log: Callable[[str], None]
    cache: Any
    data_key: str
    versions: dict[str, str]


def convert_and_evaluate(fmt, precision, model, name, parent, quantized, model_key: str, ctx: BuildContext) -> Variant:
    """Convert ``model`` to ``fmt`` at ``precision``, evaluate it in its runtime and inspect it,
    reusing the cached artifact and evaluation when their keys are unchanged.

    ``quantized`` models (QAT) carry their own int8 ranges, which the converters keep.
    Any failure is recorded on the variant; nothing is raised.
    """
    from edgekit.cache import make_key

    recipe, log = ctx.recipe, ctx.log
    variant = Variant(format=fmt.name, precision=precision, model=name, parent=parent)
    variant.path = ctx.run_dir / "artifacts" / f"{variant.stem}{fmt.suffix}"
    options = getattr(recipe.export, fmt.name).model_dump()
    variant.key = make_key(
        "convert", model=model_key, format=fmt.name, precision=precision, options=options,
        prequantized=quantized, data=ctx.data_key, versions=ctx.versions,
    )
    variant.opener = lambda: fmt.load_runtime()(variant.path, recipe.benchmark.threads, options)
    try:
        _convert(variant, fmt, model, options, quantized, ctx)
    except Exception as exc:  # noqa: BLE001 - one format failing must not stop the others
        variant.fail("conversion", exc)
        log(f"[convert] {variant.stem} FAILED: {variant.reason}")
        return variant
    eval_key = make_key("evaluate", artifact=variant.key, threads=recipe.benchmark.threads)

    def compute() -> dict:
        _inspect(variant, fmt, log)
        variant.ensure_session()
        variant.runtime = variant.session.runtime
        variant.settings.update(variant.session.settings)
        evaluate_variant(variant, ctx.data, ctx.baseline_outputs, recipe.task)
        return {k: getattr(variant, k) for k in EVALUATION}

    try:
        saved, reused = ctx.cache.fetch(
            "evaluate", eval_key, variant.stem, load=_load_evaluation, compute=compute,
            store=lambda value, folder: (folder / "evaluation.json").write_text(json.dumps(value, default=str)),
        )
    except Exception as exc:  # noqa: BLE001
        variant.fail("runtime", exc)
        log(f"[eval] {variant.stem} FAILED: {variant.reason}")
        return variant
    for name_ in EVALUATION:
        setattr(variant, name_, saved[name_])
    log(f"[eval] {variant.stem}: {format_metrics(variant.metrics)}{' (cached)' if reused else ''}")
    return variant


#: what an evaluation entry holds
EVALUATION = ("metrics", "parity", "weights", "gzip_bytes", "runtime", "settings")


def _load_evaluation(folder: Path) -> dict:
    saved = json.loads((folder / "evaluation.json").read_text())
    missing = [k for k in EVALUATION if k not in saved]
    if missing:
        raise ValueError(f"evaluation.json lacks {', '.join(missing)}")
    return saved


def _convert(variant: Variant, fmt, model, options: dict, quantized: bool, ctx: BuildContext) -> None:
    """Write the artifact into the run directory, from the cache when its key is known."""
    names = [f"artifact{fmt.suffix}", *(f"artifact{suffix}" for suffix in fmt.companions)]

    def load(folder: Path) -> dict:
        settings = json.loads((folder / "settings.json").read_text())
        for name, target in zip(names, variant.files):
            shutil.copyfile(folder / name, target)
        return settings

    def compute() -> dict:
        ctx.log(f"[convert] {variant.stem}")
        return fmt.load_converter()(model, variant.path, variant.precision, ctx.data.x_calib, options, prequantized=quantized)

    def store(settings: dict, folder: Path) -> None:
        for name, source in zip(names, variant.files):
            shutil.copyfile(source, folder / name)
        (folder / "settings.json").write_text(json.dumps(settings, default=str))

    variant.settings, reused = ctx.cache.fetch("convert", variant.key, variant.stem, load=load, compute=compute, store=store)
    if reused:
        ctx.log(f"[convert] {variant.stem} (cached)")


def _inspect(variant: Variant, fmt, log) -> None:
    """Size after gzip and weight statistics, read from the artifact file itself."""
    variant.gzip_bytes = weights.gzip_size(f for f in variant.files if f.exists())
    try:
        variant.weights = weights.summarize(fmt.load_weights_reader()(variant.path))
    except Exception as exc:  # noqa: BLE001 - statistics are a bonus, never a reason to fail a row
        variant.weights = {"error": one_line(exc)}
        log(f"[inspect] {variant.stem}: could not read weights: {variant.weights['error']}")


def format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
