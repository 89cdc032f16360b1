"""Magnitude pruning (unstructured or 2:4) with tensorflow-model-optimization."""

from __future__ import annotations

from edgekit.compress._fit import copy_model, fine_tune, steps_per_epoch


def prune(parent, step, data, recipe, log, callbacks=()):
    """Prune a copy of ``parent`` to ``step.spec.sparsity`` while fine-tuning, then strip the wrappers.

    The polynomial schedule reaches the target after 2/3 of the fine-tuning steps, so the
    last third trains at full sparsity; masks update four times an epoch.
    """
    import tensorflow_model_optimization as tfmot

    spec = step.spec
    sparsity = tfmot.sparsity.keras
    per_epoch = steps_per_epoch(data, recipe)
    total = per_epoch * spec.epochs
    frequency = max(1, per_epoch // 4)
    if spec.schedule == "constant":
        schedule = sparsity.ConstantSparsity(spec.sparsity, begin_step=0, frequency=frequency)
    else:
        end = max(1, (2 * total) // 3)
        schedule = sparsity.PolynomialDecay(0.0, spec.sparsity, begin_step=0, end_step=end, frequency=min(frequency, end))
    kwargs = {"sparsity_m_by_n": (2, 4)} if spec.structured == "2:4" else {}
    wrapped, left = _wrap_prunable(copy_model(parent), lambda layer: sparsity.prune_low_magnitude(
        layer, pruning_schedule=schedule, **kwargs))
    unpruned = (f"; {len(left)} layer(s) tfmot cannot prune stay dense: {', '.join(left[:3])}{'...' if len(left) > 3 else ''}"
                if left else "")
    log(f"[compress] {step.name}: pruning to {spec.sparsity:.0%} ({spec.structured or spec.schedule}), {spec.epochs} epochs{unpruned}")
    fine_tune(wrapped, data, recipe, spec.epochs, spec.learning_rate, log, callbacks=[sparsity.UpdatePruningStep(), *callbacks],
              name=step.name)
    return sparsity.strip_pruning(wrapped)


def _wrap_prunable(model, wrap):
    """The model with every layer tfmot can prune wrapped by ``wrap``, and the names of the
    weighted layers it left alone.

    ``prune_low_magnitude`` on a whole model refuses it when any layer is not in its registry
    (a Resizing layer, MobileNetV3's hard-swish op layers); those layers have nothing worth
    pruning, or tfmot cannot mask them, so they keep their weights dense. An unsupported layer
    is kept as it is, not rebuilt from its config (which would lose e.g. a Normalization
    layer's statistics).
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    left: list[str] = []

    def clone(layer):
        if PruneRegistry.supports(layer) or isinstance(layer, tfmot.sparsity.keras.PrunableLayer):
            return wrap(layer)
        if layer.weights:
            left.append(layer.name)
        return layer

    return keras.models.clone_model(model, clone_function=clone), left
