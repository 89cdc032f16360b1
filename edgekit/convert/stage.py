"""The convert stage: one artifact per (model, format, precision) in runs/<name>/artifacts/,
each cached under a key of what made it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from edgekit import interrupts
from edgekit.convert.preprocess import with_normalization
from edgekit.formats import FORMATS, INT8_PRECISIONS
from edgekit.tasks import TASKS
from edgekit.variant import BuildContext, Variant


def convert_variant(fmt, precision, model, name, parent, quantized, model_key: str, ctx: BuildContext) -> Variant:
    """Convert ``model`` to ``fmt`` at ``precision`` into the run directory, from the cache when
    the artifact's key is unchanged. A failure is recorded on the variant; nothing is raised.

    ``quantized`` models (QAT) carry their own int8 ranges, which the converters keep.
    """
    from edgekit.cache import make_key, source_hash

    recipe = ctx.recipe
    variant = Variant(format=fmt.name, precision=precision, model=name, parent=parent)
    variant.path = ctx.run_dir / "artifacts" / f"{variant.stem}{fmt.suffix}"
    options = getattr(recipe.export, fmt.name).model_dump()
    quantize = recipe.quantize
    # keep_float decides every int8 artifact; int8-mixed also its budget, the search's code and
    # the validation split it is scored on (part of the data key, capped as the workers get it).
    extra = {}
    modules = [fmt.converter_module, "edgekit.convert", "edgekit.convert.preprocess"]
    if precision in INT8_PRECISIONS:
        extra["keep_float"] = list(quantize.keep_float)
    if precision == "int8-mixed":
        from edgekit.data import VALIDATION_CAP

        extra.update(max_drop=quantize.max_drop, validation_cap=VALIDATION_CAP, task=recipe.task)
        modules += ["edgekit.convert.mixed", "edgekit.evaluate.scores", fmt.runtime_module, "edgekit.evaluate.layer_error",
                    "edgekit.evaluate.layer_match"]
    if precision == "int8-fast":
        from edgekit.convert.fast import key_parts

        extra.update(key_parts(recipe))  # measured on this CPU: its name is part of the key
        modules += ["edgekit.convert.fast", "edgekit.convert.mixed", "edgekit.evaluate.scores", fmt.runtime_module]
    # the input scaling folded into the first layer (edgekit.convert.fold_input): every artifact
    # of a float model; a QAT model's fake-quant ranges belong to the graph as trained
    fold = bool(getattr(recipe.export, "fold_input", True)) and not quantized
    if fold:
        extra["fold_input"] = True
        modules.append("edgekit.convert.fold_input")
    variant.key = make_key(
        "convert", model=model_key, format=fmt.name, precision=precision, options=options,
        prequantized=quantized, data=ctx.data_key, versions=fmt.versions(ctx.versions),
        code=source_hash(*modules), **extra,
    )
    variant.opener = lambda: fmt.load_runtime()(variant.path, recipe.benchmark.threads, options)
    try:
        _convert(variant, fmt, model, options, quantized, ctx, fold)
    except Exception as exc:  # noqa: BLE001 - one format failing must not stop the others
        interrupts.reraise_if_interrupted()  # Ctrl-C that a library turned into an error
        variant.fail("conversion", exc)
        ctx.log(f"[convert] {variant.stem} FAILED: {variant.reason}")
    return variant


def _convert(variant: Variant, fmt, model, options: dict, quantized: bool, ctx: BuildContext, fold: bool = False) -> None:
    """Write the artifact into the run directory, from the cache when its key is known."""
    names = [f"artifact{fmt.suffix}", *(f"artifact{suffix}" for suffix in fmt.companions)]

    def load(folder: Path) -> dict:
        settings = json.loads((folder / "settings.json").read_text())
        for name, target in zip(names, variant.files):
            shutil.copyfile(folder / name, target)
        return settings

    def compute() -> dict:
        ctx.log(f"[convert] {variant.stem}")
        # The artifact takes raw features: the fitted normalization goes in front of the model
        # (x_calib is then raw too); with embed_normalization: false the bare model is exported.
        from edgekit.train.stage import keras_model

        bare = keras_model(model)  # a model from the train cache loads here, on a miss only
        exported = with_normalization(bare, ctx.data.normalization) if getattr(ctx.data, "embedded", False) else bare
        folded = None
        if fold:
            from edgekit.convert.fold_input import fold_input

            exported, folded = fold_input(exported, ctx.data.x_calib, int8=variant.precision in INT8_PRECISIONS)
            if folded.get("folded"):
                ctx.log(f"[convert] {variant.stem}: input scaling {', '.join(folded['layers'])} folded into {folded['into']}")
        settings = _converted(variant, fmt, exported, options, quantized, ctx)
        if folded is not None:
            settings["input_fold"] = folded
        return settings

    def store(settings: dict, folder: Path) -> None:
        for name, source in zip(names, variant.files):
            shutil.copyfile(source, folder / name)
        (folder / "settings.json").write_text(json.dumps(settings, default=str))

    variant.settings, reused = ctx.cache.fetch("convert", variant.key, variant.stem, load=load, compute=compute, store=store,
                                               holds=variant.identity())
    if reused:
        ctx.log(f"[convert] {variant.stem} (cached)")


def _converted(variant: Variant, fmt, exported, options: dict, quantized: bool, ctx: BuildContext) -> dict:
    """Write ``exported`` as the variant's artifact; the settings of its converter (or search)."""
    keep = tuple(ctx.recipe.quantize.keep_float)
    if variant.precision == "int8-mixed":
        from edgekit.convert.mixed import build_mixed

        return build_mixed(fmt, exported, variant.path, ctx.data.x_calib, options, keep_float=keep,
                           max_drop=ctx.recipe.quantize.max_drop, data=ctx.data, task=ctx.recipe.task,
                           threads=ctx.recipe.benchmark.threads, log=ctx.log)
    if variant.precision == "int8-fast":
        from edgekit.convert.fast import build_fast

        return build_fast(fmt, exported, variant.path, ctx.data.x_calib, options, keep_float=keep,
                          max_drop=ctx.recipe.quantize.max_drop, data=ctx.data, task=ctx.recipe.task,
                          threads=ctx.recipe.benchmark.threads, log=ctx.log)
    # keep_float reaches int8 only (a converter without the keyword is never handed an empty one)
    extra = {"keep_float": keep} if keep and variant.precision == "int8" else {}
    return fmt.load_converter()(exported, variant.path, variant.precision, ctx.data.x_calib, options,
                                prequantized=quantized, **extra)


def check_keep_float(recipe, model) -> None:
    """Stop the build, before any conversion, when ``quantize.keep_float`` names a layer the model
    does not have: one line with the unknown name, the close match and the layers it has.

    Raises:
        RecipeError: an unknown layer name.
    """
    if not recipe.quantize.keep_float:
        return
    from edgekit.convert import keras_layer_names
    from edgekit.errors import RecipeError, did_you_mean
    from edgekit.train.stage import keras_model

    # A cached model is not loaded for this (a fully cached rebuild never imports TensorFlow):
    # a .keras file lists its layers in its config.json.
    names = None if getattr(model, "loaded", True) else _layer_names_in_file(getattr(model, "path", None))
    names = names if names is not None else keras_layer_names(keras_model(model))
    for index, wanted in enumerate(recipe.quantize.keep_float):
        if wanted not in names:
            shown = ", ".join(names[:40]) + (f", ... ({len(names)} in all)" if len(names) > 40 else "")
            raise RecipeError(f"{recipe.path or 'recipe'}: quantize.keep_float[{index}]: the model has no layer "
                              f"\"{wanted}\"{did_you_mean(wanted, names)}; its layers: {shown}")


def _layer_names_in_file(path) -> list[str] | None:
    """The layer names a .keras file's config.json lists (as ``keras_layer_names`` gives them for
    the loaded model), or None for any other file or config."""
    from edgekit.errors import ModelError
    from edgekit.models.safety import read_configs

    def walk(config, out):
        for layer in (config or {}).get("layers", []) or []:
            if not isinstance(layer, dict):
                return None
            inner = layer.get("config") or {}
            name = inner.get("name") or layer.get("name")
            if layer.get("class_name") != "InputLayer" and name and name not in out:
                out.append(name)
            if isinstance(inner, dict) and "layers" in inner and walk(inner, out) is None:
                return None
        return out

    if path is None or Path(path).suffix != ".keras":
        return None
    try:
        configs = read_configs(Path(path))  # the config as JSON data, as safe mode reads it
        return (walk(configs[0].data.get("config"), []) or None) if configs else None
    except (ModelError, OSError, AttributeError, TypeError, IndexError):
        return None


def _with_mixed(listed, fmt, max_drop) -> list[str]:
    """``quantize.max_drop`` set: an int8-mixed row right after int8 in every format that has both."""
    listed = list(listed)
    if max_drop is None or "int8-mixed" in listed or not {"int8", "int8-mixed"} <= set(fmt.precisions):
        return listed
    at = listed.index("int8") + 1 if "int8" in listed else len(listed)
    return [*listed[:at], "int8-mixed", *listed[at:]]


def _several(ctx) -> bool:
    """Whether the build's model has several inputs or outputs (a structured batch)."""
    x = getattr(getattr(ctx, "data", None), "x_test", None)
    out = getattr(ctx, "baseline_outputs", None)
    return bool(getattr(getattr(x, "dtype", None), "names", None) or getattr(getattr(out, "dtype", None), "names", None))


class Ready:
    """A variant already finished (from the cache, or failed before it could be built)."""

    def __init__(self, variant: Variant):
        self.variant = variant

    def done(self) -> bool:
        return True

    def result(self) -> Variant:
        return self.variant


class Exporter:
    """Turns one Keras model into a variant per format and precision of the recipe.

    ``start(fmt, precision, model, name, parent, quantized, model_key, model_file)`` begins one
    (convert, then evaluate: in a worker process, see ``edgekit.evaluate.worker``) and returns a
    handle with ``done()`` and ``result()`` (the Variant). The exporter decides which pairs
    exist and keeps every handle in row order; ``variants()`` waits for them all.
    """

    def __init__(self, ctx: BuildContext, start: Callable[..., Any] | None = None, done_count=None):
        self.ctx = ctx
        self.start = start
        #: counts the variants finished without ``start`` (skipped, failed compression), or None
        self.done_count = done_count
        self.recipe = ctx.recipe
        self.not_produced: list[dict[str, str]] = []
        #: automatic precisions considered, added or not, and why (``edgekit.convert.auto``)
        self.auto_precisions: list[dict] = []
        #: one handle per variant, in the order of the rows
        self.planned: list[Any] = []

    def combinations(self, name: str, quantized: bool, precisions=None):
        """(format, precision) pairs to build; the others are recorded in ``not_produced``."""
        for fmt_name in self.recipe.export.formats:
            fmt = FORMATS[fmt_name]
            listed = precisions or self.recipe.quantize.precisions
            # A format's automatic precisions (openvino bf16 on a CPU that runs it natively), for
            # the base model: a compressed one gets them where its precisions list them.
            if name == "base" and not quantized:
                options = getattr(self.recipe.export, fmt.name, None)
                self._remember_auto(fmt, fmt.auto_candidates(listed, options))
                listed = fmt.precisions_for(listed, options)
                listed = _with_mixed(listed, fmt, self.recipe.quantize.max_drop)
            for precision in listed:
                skipped = {"id": Variant(format=fmt.name, precision=precision, model=name).stem,
                           "model": name, "format": fmt.name, "precision": precision}
                if precision not in fmt.precisions:
                    self.not_produced.append({**skipped, "reason": f"{fmt.name} has no {precision} converter"})
                elif quantized and precision != "int8":
                    self.not_produced.append({**skipped, "reason": "QAT models are exported at int8 only"})
                elif precision == "int8-mixed" and name != "base":
                    self.not_produced.append({**skipped, "reason": "int8-mixed is searched for the base model only"})
                elif precision == "int8-mixed" and _several(self.ctx):
                    self.not_produced.append({**skipped, "reason": "int8-mixed searches models of one input and one "
                                              "output; this one has several"})
                elif precision == "int8-mixed" and not TASKS[self.recipe.task].scored_validation:
                    self.not_produced.append({**skipped, "reason": f"int8-mixed needs a validation split scored by "
                                              f"{TASKS[self.recipe.task].primary_metric}; a {self.recipe.task} "
                                              "validation split holds normal samples only"})
                else:
                    yield fmt, precision

    def _remember_auto(self, fmt, candidates) -> None:
        """Keep the decision on each automatic precision of ``fmt`` (``edgekit.convert.auto``:
        added or not, and why) for results.json ``auto_precisions``."""
        from edgekit.convert.auto import decide

        for precision in candidates:
            if not any(d["format"] == fmt.name and d["precision"] == precision for d in self.auto_precisions):
                self.auto_precisions.append(decide(fmt, precision))

    def export(self, model, name: str, parent: str | None, quantized: bool, model_key: str, precisions=None,
               model_file: Path | None = None) -> list[Any]:
        """Start every variant of ``model``; ``model_file`` is the model saved as .keras (the
        workers read it; without one, the model is saved for them when one is needed)."""
        handles = []
        for fmt, precision in self.combinations(name, quantized, precisions):
            if reason := fmt.skip_reason(precision):
                # Listed in the recipe, but not native on this CPU: a skipped row, not an error.
                variant = Variant(format=fmt.name, precision=precision, model=name, parent=parent,
                                  status="skipped", reason=reason)
                handles.append(Ready(variant))
                self._count()
            else:
                handles.append(self.start(fmt, precision, model, name, parent, quantized, model_key, model_file))
        self.planned += handles
        return handles

    def failed(self, step, reason: str) -> None:
        """Failed rows for every artifact an exported step would have made."""
        if not step.export:
            return
        for fmt, precision in self.combinations(step.name, step.quantized, step.precisions):
            variant = Variant(format=fmt.name, precision=precision, model=step.name, parent=step.parent)
            variant.fail("compression", reason)
            self.planned.append(Ready(variant))
            self._count()

    def _count(self) -> None:
        if self.done_count is not None:
            self.done_count.add()

    def variants(self) -> list[Variant]:
        """Every variant, in row order, once all have finished (waits for the workers)."""
        return [handle.result() for handle in self.planned]

    def finished(self) -> list[Variant]:
        """The variants finished so far (what partial results can show after Ctrl-C)."""
        return [handle.result() for handle in self.planned if handle.done()]
