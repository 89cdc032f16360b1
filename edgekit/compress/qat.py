"""Quantization-aware training, keeping sparsity and/or clusters of the parent (PQAT, CQAT, PCQAT)."""

from __future__ import annotations

from edgekit.compress._fit import copy_model, fine_tune


def quantize_aware(parent, step, data, recipe, log, callbacks=()):
    """Insert fake-quantization into a copy of ``parent`` and fine-tune it.

    The returned model keeps its quantize wrappers: converters read the learned ranges from
    it, so QAT models are converted to int8 without calibration.
    """
    import tensorflow_model_optimization as tfmot

    quantization = tfmot.quantization.keras
    combine = tfmot.experimental.combine
    schemes = {
        None: None,
        "prune": combine.Default8BitPrunePreserveQuantizeScheme,
        "cluster": combine.Default8BitClusterPreserveQuantizeScheme,
        "prune+cluster": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
    }
    scheme = schemes[step.preserve]
    annotated = quantization.quantize_annotate_model(copy_model(parent))
    model = quantization.quantize_apply(annotated, scheme()) if scheme else quantization.quantize_apply(annotated)
    log(f"[compress] {step.name}: quantization-aware training{f' preserving {step.preserve}' if step.preserve else ''}, "
        f"{step.spec.epochs} epochs")
    return fine_tune(model, data, recipe, step.spec.epochs, step.spec.learning_rate, log, callbacks=callbacks,
                     name=step.name)
