"""The evaluate stage: every artifact's task metric and its agreement with the Keras model,
computed from the outputs of its own runtime on the test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgekit import interrupts
from edgekit.convert.stage import convert_variant
from edgekit.errors import one_line
from edgekit.evaluate import scores, weights
from edgekit.variant import BuildContext, Variant


def score(outputs, data, baseline_outputs, task: str) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, parity) of test-split outputs, wherever they were produced (the headline of
    a model of several outputs: see ``score_outputs``)."""
    metrics, parity, _ = score_outputs(outputs, data, baseline_outputs, task)
    return metrics, parity


def score_outputs(outputs, data, baseline_outputs, task: str) -> tuple[dict, dict, dict]:
    """(metrics, parity, per output) of test-split outputs, wherever they were produced.

    A model of one output (and labels of one) is scored as a whole, and ``per output`` is {}.
    A model of several outputs (a structured batch, one field per output) is scored output by
    output (``scores.output_scores``): each labelled output (``y_test_<output>``) for its own
    task, every other one against the Keras fp32 outputs (fidelity: SNR, and top-1 agreement
    for class scores). The headline metrics are the WORST output's among those scored for the
    recipe's task, never a figure pooled over outputs; the headline parity is the worst of each
    parity figure over the outputs.
    """
    from edgekit.runtimes import field_names
    from edgekit.tasks import TASKS

    heads = dict(getattr(data, "output_tasks", None) or {})
    if field_names(baseline_outputs) is None and not heads:
        # An autoencoder reconstructs what the trained model takes: normalized features.
        x = data.model_inputs(data.x_test) if task == "anomaly" and hasattr(data, "model_inputs") else data.x_test
        # Label-free fidelity scores every row against the Keras fp32 outputs (the baseline row: itself).
        truth = baseline_outputs if TASKS[task].scored_against == "reference" else data.y_test
        return scores.metrics(task, outputs, truth, x=x), scores.parity(outputs, baseline_outputs, task), {}
    per = scores.output_scores(task, outputs, baseline_outputs, data.y_test if heads else None, heads)
    return (*scores.headline(per, task), per)


def evaluate_variant(variant: Variant, data, baseline_outputs, task: str):
    """Run the test split through the variant's session; fill metrics and parity (against
    ``baseline_outputs``, or against itself for the baseline), per output for several."""
    outputs = variant.session.predict(data.x_test)
    baseline_outputs = outputs if baseline_outputs is None else baseline_outputs
    variant.metrics, variant.parity, variant.outputs = score_outputs(outputs, data, baseline_outputs, task)
    return outputs


def convert_and_evaluate(fmt, precision, model, name, parent, quantized, model_key: str, ctx: BuildContext) -> Variant:
    """Convert ``model`` to ``fmt`` at ``precision``, evaluate it in its runtime and inspect it,
    reusing the cached artifact and evaluation when their keys are unchanged.

    Any failure is recorded on the variant; nothing is raised.
    """
    variant = convert_variant(fmt, precision, model, name, parent, quantized, model_key, ctx)
    return variant if variant.status != "ok" else evaluate_converted(variant, fmt, ctx, model)


def evaluate_converted(variant: Variant, fmt, ctx: BuildContext, model=None) -> Variant:
    """Evaluate a converted artifact on the test split in its runtime (or take the cached
    evaluation of the same artifact); a failure is recorded on the variant.

    ``model`` is the Keras model (or its ``ModelHandle``) the artifact was converted from: an
    int8 row's evaluation also holds its per-layer quantization error against it, on the
    validation split (``edgekit.evaluate.layer_error``; a failure there is recorded in the
    record, never on the row)."""
    from edgekit.cache import make_key, source_hash

    recipe, log = ctx.recipe, ctx.log
    eval_key = make_key("evaluate", artifact=variant.key, threads=recipe.benchmark.threads,
                        code=source_hash(fmt.runtime_module, "edgekit.runtimes", "edgekit.evaluate.scores", "edgekit.evaluate.weights",
                                         "edgekit.evaluate.layer_error", "edgekit.evaluate.layer_match"))

    def compute() -> dict:
        _inspect(variant, fmt, log)
        variant.ensure_session()
        variant.runtime = variant.session.runtime
        variant.settings.update(variant.session.settings)
        variant.io = io_record(variant.session)
        evaluate_variant(variant, ctx.data, ctx.baseline_outputs, recipe.task)
        variant.layer_error = measure_layer_error(variant, fmt, model, ctx)
        return {k: getattr(variant, k) for k in EVALUATION}

    try:
        saved, reused = ctx.cache.fetch(
            "evaluate", eval_key, variant.stem, load=_load_evaluation, compute=compute,
            store=lambda value, folder: (folder / "evaluation.json").write_text(json.dumps(value, default=str)),
            holds=variant.identity(),
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


def measure_layer_error(variant: Variant, fmt, model, ctx: BuildContext) -> dict:
    """The per-layer quantization error of an int8 row (``INT8_PRECISIONS``) against the model
    the converter got (behind the embedded normalization where the data embeds it), on the
    first validation samples in the artifact's input space; {} for other rows and formats
    without an intermediates reader; ``{"error": one line}`` when it cannot be measured."""
    from edgekit.formats import INT8_PRECISIONS

    if variant.precision not in INT8_PRECISIONS or not getattr(fmt, "intermediates", ""):
        return {}
    try:
        from edgekit.convert.preprocess import with_normalization
        from edgekit.evaluate.layer_error import SAMPLES, SNR_CAP, layer_errors
        from edgekit.train.stage import keras_model

        if model is None:
            raise ValueError("no Keras model to compare the artifact's layers with")
        data = ctx.data
        x_val = getattr(data, "x_val", None)
        if x_val is None or len(x_val) == 0:
            raise ValueError("no validation samples to compare layers on")
        bare = keras_model(model)
        exported = with_normalization(bare, data.normalization) if getattr(data, "embedded", False) else bare
        x = data.artifact_inputs(x_val[:SAMPLES]) if hasattr(data, "artifact_inputs") else x_val[:SAMPLES]
        from edgekit.models.saved_model import is_signature_model

        if is_signature_model(bare):
            raise ValueError("the model is a SavedModel's serving signature, one layer to Keras: there are no Keras "
                             "layers to compare with the artifact's tensors")
        if getattr(x, "dtype", None) is not None and x.dtype.names:
            raise ValueError(f"the model has {len(x.dtype.names)} inputs; the per-layer error reads artifacts of one "
                             "input (its intermediates readers feed the first input only)")
        options = getattr(getattr(getattr(ctx, "recipe", None), "export", None), fmt.name, None)  # the artifact's own
        # the build's fp32 artifact of the same model and format is the twin the layers are found in
        twin = Variant(format=variant.format, precision="fp32", model=variant.model).stem + fmt.suffix
        record = layer_errors(fmt, exported, variant.path, x, options=options.model_dump() if options is not None else None,
                              reference=variant.path.with_name(twin) if variant.path is not None else None)
        compared = f"{record['layers_matched']}/{record['layers_total']} layers compared"
        if record["layers"] and record["layers"][0]["added_db"] < SNR_CAP:
            worst = record["layers"][0]
            ctx.log(f"[layers] {variant.stem}: {compared}, worst {worst['layer']} (adds noise at {worst['added_db']:.1f} dB, "
                    f"output {worst['snr_db']:.1f} dB) in {record['seconds']:.2f} s")
        else:
            ctx.log(f"[layers] {variant.stem}: {compared}, none adds measurable error in {record['seconds']:.2f} s")
        return record
    except Exception as exc:  # noqa: BLE001 - a bonus measurement, never a reason to fail a row
        interrupts.reraise_if_interrupted()
        ctx.log(f"[layers] {variant.stem}: no per-layer error: {one_line(exc)}")
        return {"error": one_line(exc)}


#: what an evaluation entry holds
EVALUATION = ("metrics", "parity", "weights", "gzip_bytes", "runtime", "settings", "layer_error", "outputs", "io")


def io_record(session) -> dict:
    """A row's ``io``: every input and output of the artifact as its session runs it (name,
    dtype, shape, the quantization of integer I/O; ``edgekit.runtimes.TensorInfo``); {} for a
    session that does not describe itself."""
    try:
        return session.io() if getattr(session, "inputs", None) else {}
    except Exception:  # noqa: BLE001 - a description never fails a row
        return {}


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


#: the Keras baseline's evaluation entry: EVALUATION fields plus the results.json model block
BASELINE_EVALUATION = (*EVALUATION, "model")
#: the baseline model behind the fitted normalization (``convert.preprocess.save_wrapped``)
WRAPPED_NAME = "model_raw_inputs.keras"


def keras_baseline(model, model_key: str, run_dir: Path, recipe, data, data_key: str, versions: dict, cache, log):
    """The baseline row: the Keras model (behind the fitted normalization when the data embeds
    it), evaluated on the test split, cached like every other row's evaluation.

    The evaluate entry holds its metrics, parity, weight statistics, runtime and settings, the
    results.json ``model`` block, its test outputs (``outputs.npy``: every other row's parity
    reference) and the wrapped model file when normalization is embedded. On a hit nothing
    loads the model or imports TensorFlow: the variant's session opens on first use
    (``Variant.ensure_session``), e.g. when the bench stage has to time it.

    Args:
        model: the trained model or its ``edgekit.train.stage.ModelHandle``.
        model_key: the train (or load) stage's key of ``model``.
        versions: package versions (the baseline's entry follows TensorFlow's and Keras').

    Returns:
        (variant, test outputs, the results.json model block).
    """
    import numpy as np

    from edgekit.cache import make_key, source_hash
    from edgekit.train.fit import describe
    from edgekit.train.stage import configure_tensorflow, keras_model, versions_of

    threads = recipe.benchmark.threads
    embedded = bool(getattr(data, "embedded", False)) and data.normalization is not None
    model_dir = run_dir / "model"
    baseline = Variant(format="keras", precision="fp32", path=model_dir / (WRAPPED_NAME if embedded else "model.keras"),
                       key=model_key)
    key = make_key(
        "evaluate", artifact=model_key, format="keras", precision="fp32", data=data_key, embedded=embedded,
        task=recipe.task, threads=threads,
        versions=versions_of(versions, "tensorflow", "tf-keras", "keras", "numpy"),
        code=source_hash(__name__, "edgekit.runtimes.keras", "edgekit.runtimes", "edgekit.convert",
                         "edgekit.convert.preprocess", "edgekit.evaluate.scores", "edgekit.evaluate.weights",
                         "edgekit.models.outputs"),
    )

    def session_model():
        bare = keras_model(model)
        if not embedded:
            return bare
        from edgekit.convert.preprocess import with_normalization

        return with_normalization(bare, data.normalization)

    def open_session():
        from edgekit.runtimes import keras as keras_runtime

        # A build whose model was never loaded starts TensorFlow here, at the bench's threads.
        configure_tensorflow(threads, if_unset=True)
        return keras_runtime.open_session(session_model(), threads)

    baseline.opener = open_session

    def compute():
        from edgekit.runtimes import keras as keras_runtime

        bare = keras_model(model)
        served = session_model()
        if embedded:
            from edgekit.convert.preprocess import save_wrapped

            save_wrapped(served, model_dir)
        baseline.session = keras_runtime.open_session(served, threads)
        outputs = np.asarray(baseline.session.predict(data.x_test))
        metrics, parity, per_output = score_outputs(outputs, data, outputs, recipe.task)
        saved = {"metrics": metrics, "parity": parity, "weights": weights.summarize(bare.get_weights()), "layer_error": {},
                 "gzip_bytes": weights.gzip_size(baseline.files), "runtime": baseline.session.runtime,
                 "settings": dict(baseline.session.settings), "model": describe(bare, recipe.task, data.x_train),
                 "outputs": per_output, "io": io_record(baseline.session)}
        return saved, outputs

    def store(value, folder: Path) -> None:
        saved, outputs = value
        (folder / "evaluation.json").write_text(json.dumps(saved, default=str))
        np.save(folder / "outputs.npy", outputs, allow_pickle=False)
        if embedded:
            shutil.copyfile(model_dir / WRAPPED_NAME, folder / WRAPPED_NAME)

    def load(folder: Path):
        saved = json.loads((folder / "evaluation.json").read_text())
        missing = [k for k in BASELINE_EVALUATION if k not in saved]
        if missing:
            raise ValueError(f"evaluation.json lacks {', '.join(missing)}")
        outputs = np.load(folder / "outputs.npy", allow_pickle=False)
        if len(outputs) != len(data.x_test):
            raise ValueError(f"outputs.npy holds {len(outputs)} outputs for {len(data.x_test)} test samples")
        if embedded:
            model_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / WRAPPED_NAME, model_dir / WRAPPED_NAME)
        return saved, outputs

    (saved, outputs), reused = cache.fetch("evaluate", key, baseline.stem, load=load, compute=compute, store=store)
    for name in EVALUATION:
        setattr(baseline, name, saved[name])
    log(f"[eval] {baseline.stem}: {format_metrics(baseline.metrics)}{' (cached)' if reused else ''}")
    return baseline, outputs, saved["model"]
