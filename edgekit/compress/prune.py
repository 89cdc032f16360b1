"""Magnitude pruning (unstructured or 2:4) with tensorflow-model-optimization."""

from __future__ import annotations

from edgekit.compress._fit import copy_model, fine_tune, steps_per_epoch


def prune(parent, step, data, recipe, log):
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
    wrapped = sparsity.prune_low_magnitude(copy_model(parent), pruning_schedule=schedule, **kwargs)
    log(f"[compress] {step.name}: pruning to {spec.sparsity:.0%} ({spec.structured or spec.schedule}), {spec.epochs} epochs")
    fine_tune(wrapped, data, recipe, spec.epochs, spec.learning_rate, log, callbacks=[sparsity.UpdatePruningStep()])
    return sparsity.strip_pruning(wrapped)
