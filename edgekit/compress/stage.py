"""The compress stage: pruned, clustered and QAT models made from the trained one, each cached,
each exported like the base model."""

from __future__ import annotations

from edgekit import interrupts
from edgekit.convert.stage import Exporter
from edgekit.errors import one_line
from edgekit.evaluate import scores
from edgekit.evaluate.stage import format_metrics
from edgekit.variant import BuildContext


def compressed_variants(base_model, base_key: str, ctx: BuildContext, exporter: Exporter, models: list,
                        tensorboard: bool = False) -> None:
    """The compress stage: make each compressed model from its parent (or take it from the cache),
    then hand it to ``exporter`` (its variants join ``exporter.planned``, converted in worker
    processes while the next model trains here); its lineage goes into ``models``.

    ``tensorboard``: each fine-tuning writes TensorBoard logs into ``tensorboard/<model>`` of the
    run directory, kept in the model's cache entry and copied back when it is reused."""
    recipe, data, log, cache = ctx.recipe, ctx.data, ctx.log, ctx.cache
    if not recipe.compress:
        return
    from edgekit import compress
    from edgekit.cache import make_key, source_hash
    from edgekit.train import stage as train_stage
    from edgekit.train import tensorboard as tensorboard_logs

    threads = recipe.train.resolved_threads()
    keras_models = {"base": (base_model, base_key)}
    for step in compress.plan(recipe.compress):
        info = {"name": step.name, "parent": step.parent, "step": step.kind, "preserve": step.preserve,
                "exported": step.export, "spec": step.spec.model_dump()}
        models.append(info)
        if step.parent not in keras_models:
            info["status"] = "failed"
            exporter.failed(step, f"its parent {step.parent} failed")
            continue
        parent, parent_key = keras_models[step.parent]
        # Fine-tuning runs on TensorFlow's threads in this process: train.threads.
        key = make_key("compress", kind=step.kind, spec=step.spec.model_dump(), preserve=step.preserve, parent=parent_key,
                       data=ctx.data_key, seed=recipe.seed, batch_size=recipe.train.batch_size, learning_rate=recipe.train.learning_rate,
                       threads=threads,
                       versions=train_stage.versions_of(ctx.versions, "tensorflow", "tf-keras", "tensorflow-model-optimization"),
                       code=source_hash("edgekit.compress.*"))
        info["key"] = key
        # A QAT model does not survive a .keras round trip (tfmot 0.8's QuantizeLayer builds 5
        # variables on load under TF 2.21 where the file holds 3, so every rebuild retrained it);
        # the HDF5 format reloads it exactly.
        file_name = "model.h5" if step.quantized else "model.keras"
        log_dir = tensorboard_logs.model_dir(ctx.run_dir / tensorboard_logs.TENSORBOARD_DIR, step.name) if tensorboard else None

        def load(folder, name=file_name, log_dir=log_dir, model=step.name):
            tensorboard_logs.restore(folder, log_dir, log, model)  # the logs of the fine-tuning that made it
            return train_stage.ModelHandle(folder / name, lambda path=folder / name: train_stage.load_for_stage(path, threads))

        def store(m, folder, name=file_name, log_dir=log_dir):
            train_stage.keras_model(m).save(folder / name)
            tensorboard_logs.keep(log_dir, folder)

        try:
            # A cached model is a handle: loaded only if a stage below misses (a child to
            # fine-tune, an artifact to convert, its Keras metrics to compute).
            model, reused = cache.fetch(
                "compress", key, step.name,
                load=load,
                compute=lambda step=step, parent=parent, log_dir=log_dir: compress.make(
                    step, train_stage.keras_model(parent), data, recipe, log, tensorboard_logs.callbacks(log_dir)),
                store=store,
            )
        except Exception as exc:  # noqa: BLE001 - one failed variant must not stop the build
            interrupts.reraise_if_interrupted()  # Ctrl-C that a library turned into an error
            info.update(status="failed", reason=one_line(exc))
            log(f"[compress] {step.name} FAILED: {info['reason']}")
            exporter.failed(step, one_line(exc))
            continue
        if reused:
            log(f"[compress] {step.name}: reused from the cache")
        keras_models[step.name] = (model, key)
        info["keras_metrics"], metrics_reused = _keras_metrics(step.name, model, key, ctx)
        log(f"[compress] {step.name} (keras): {format_metrics(info['keras_metrics'])}{' (cached)' if metrics_reused else ''}")
        if step.export:
            # The workers read the model from its cache entry (written even with --fresh).
            exporter.export(model, step.name, step.parent, step.quantized, key, step.precisions,
                            model_file=cache.entry("compress", key) / file_name)


def _keras_metrics(name: str, model, key: str, ctx: BuildContext) -> tuple[dict[str, float], bool]:
    """The compressed Keras model's own task metrics on the test split (results.json
    ``models[].keras_metrics``), cached as an evaluate entry: a rebuild does not load the model."""
    import json

    from edgekit.cache import make_key, source_hash
    from edgekit.train import fit as train_stage
    from edgekit.train import stage as stage_train
    from edgekit.variant import Variant

    recipe, data = ctx.recipe, ctx.data
    eval_key = make_key("evaluate", artifact=key, format="keras", model=name, data=ctx.data_key, task=recipe.task,
                        versions=stage_train.versions_of(ctx.versions, "tensorflow", "tf-keras", "numpy"),
                        code=source_hash("edgekit.evaluate.scores", "edgekit.train.fit"))

    def compute() -> dict[str, float]:
        x_test = data.model_inputs(data.x_test)  # the bare Keras model takes normalized features
        outputs = train_stage.predict(stage_train.keras_model(model), x_test)
        return scores.metrics(recipe.task, outputs, data.y_test, x=x_test)

    def load(folder) -> dict[str, float]:
        metrics = json.loads((folder / "metrics.json").read_text())
        if not isinstance(metrics, dict):
            raise TypeError("metrics.json holds no metrics")
        return metrics

    return ctx.cache.fetch("evaluate", eval_key, Variant(format="keras", precision="fp32", model=name).stem,
                           load=load, compute=compute,
                           store=lambda metrics, folder: (folder / "metrics.json").write_text(json.dumps(metrics, default=float)))
