"""The compress stage: pruned, clustered and QAT models made from the trained one, each cached,
each exported like the base model."""

from __future__ import annotations

from edgekit import interrupts
from edgekit.convert.stage import BuildContext, Exporter
from edgekit.errors import one_line
from edgekit.evaluate import scores
from edgekit.evaluate.stage import format_metrics


def compressed_variants(base_model, base_key: str, ctx: BuildContext, exporter: Exporter, models: list) -> None:
    """The compress stage: make each compressed model from its parent (or take it from the cache),
    then hand it to ``exporter`` (its variants join ``exporter.planned``, converted in worker
    processes while the next model trains here); its lineage goes into ``models``."""
    recipe, data, log, cache = ctx.recipe, ctx.data, ctx.log, ctx.cache
    if not recipe.compress:
        return
    from edgekit import compress
    from edgekit import train as train_stage
    from edgekit.cache import make_key, source_hash

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
        key = make_key("compress", kind=step.kind, spec=step.spec.model_dump(), preserve=step.preserve, parent=parent_key,
                       data=ctx.data_key, seed=recipe.seed, batch_size=recipe.train.batch_size, learning_rate=recipe.train.learning_rate,
                       versions=train_stage.versions_of(ctx.versions, "tensorflow", "tf-keras", "tensorflow-model-optimization"),
                       code=source_hash("edgekit.compress.*"))
        info["key"] = key
        # A QAT model does not survive a .keras round trip (tfmot 0.8's QuantizeLayer builds 5
        # variables on load under TF 2.21 where the file holds 3, so every rebuild retrained it);
        # the HDF5 format reloads it exactly.
        file_name = "model.h5" if step.quantized else "model.keras"
        try:
            model, reused = cache.fetch(
                "compress", key, step.name,
                load=lambda folder, name=file_name: train_stage.load_stage_model(folder / name),
                compute=lambda step=step, parent=parent: compress.make(step, parent, data, recipe, log),
                store=lambda m, folder, name=file_name: m.save(folder / name),
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
        x_test = data.model_inputs(data.x_test)  # the bare Keras model takes normalized features
        info["keras_metrics"] = scores.metrics(recipe.task, train_stage.predict(model, x_test), data.y_test, x=x_test)
        log(f"[compress] {step.name} (keras): {format_metrics(info['keras_metrics'])}")
        if step.export:
            # The workers read the model from its cache entry (written even with --fresh).
            exporter.export(model, step.name, step.parent, step.quantized, key, step.precisions,
                            model_file=cache.entry("compress", key) / file_name)
