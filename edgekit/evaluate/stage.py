"""The evaluate stage: every artifact's task metric and its agreement with the Keras model,
computed from the outputs of its own runtime on the test split."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit import interrupts
from edgekit.convert.stage import BuildContext, convert_variant
from edgekit.errors import one_line
from edgekit.evaluate import scores, weights
from edgekit.evaluate.variant import Variant


def score(outputs, data, baseline_outputs, task: str) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, parity) of test-split outputs, wherever they were produced."""
    # An autoencoder reconstructs what the trained model takes: normalized features.
    x = data.model_inputs(data.x_test) if task == "anomaly" and hasattr(data, "model_inputs") else data.x_test
    return (scores.metrics(task, outputs, data.y_test, x=x),
            scores.parity(outputs, baseline_outputs, task))


def evaluate_variant(variant: Variant, data, baseline_outputs, task: str):
    """Run the test split through the variant's session; fill metrics and parity (against
    ``baseline_outputs``, or against itself for the baseline)."""
    outputs = variant.session.predict(data.x_test)
    baseline_outputs = outputs if baseline_outputs is None else baseline_outputs
    variant.metrics, variant.parity = score(outputs, data, baseline_outputs, task)
    return outputs


def convert_and_evaluate(fmt, precision, model, name, parent, quantized, model_key: str, ctx: BuildContext) -> Variant:
    """Convert ``model`` to ``fmt`` at ``precision``, evaluate it in its runtime and inspect it,
    reusing the cached artifact and evaluation when their keys are unchanged.

    Any failure is recorded on the variant; nothing is raised.
    """
    variant = convert_variant(fmt, precision, model, name, parent, quantized, model_key, ctx)
    return variant if variant.status != "ok" else evaluate_converted(variant, fmt, ctx)


def evaluate_converted(variant: Variant, fmt, ctx: BuildContext) -> Variant:
    """Evaluate a converted artifact on the test split in its runtime (or take the cached
    evaluation of the same artifact); a failure is recorded on the variant."""
    from edgekit.cache import make_key, source_hash

    recipe, log = ctx.recipe, ctx.log
    eval_key = make_key("evaluate", artifact=variant.key, threads=recipe.benchmark.threads,
                        code=source_hash(fmt.runtime_module, "edgekit.runtimes", "edgekit.evaluate.scores", "edgekit.evaluate.weights"))

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
        interrupts.reraise_if_interrupted()  # Ctrl-C that a library turned into an error
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


def keras_baseline(model, model_key: str, run_dir: Path, recipe) -> Variant:
    """The baseline row's variant: the Keras model itself, opened as a tf.function session."""
    from edgekit.runtimes import keras as keras_runtime

    baseline = Variant(format="keras", precision="fp32", path=run_dir / "model" / "model.keras", key=model_key)
    baseline.session = keras_runtime.open_session(model, recipe.benchmark.threads)
    baseline.runtime, baseline.settings = baseline.session.runtime, dict(baseline.session.settings)
    baseline.gzip_bytes = weights.gzip_size(baseline.files)
    baseline.weights = weights.summarize(model.get_weights())
    return baseline
