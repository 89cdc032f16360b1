"""Weight clustering (optionally keeping a pruned model's zeros) with tensorflow-model-optimization."""

from __future__ import annotations

from edgekit.compress._fit import copy_model, fine_tune

_INIT = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED", "random": "RANDOM"}


def cluster(parent, step, data, recipe, log, callbacks=()):
    """Cluster a copy of ``parent`` to ``clusters`` values per kernel, fine-tune, strip the wrappers.

    When the parent was pruned, clustering preserves its zeros (sparsity-preserving clustering).
    """
    import tensorflow_model_optimization as tfmot

    spec = step.spec
    clustering = tfmot.clustering.keras
    preserve = step.preserve is not None  # the parent was pruned: keep its zeros
    init = getattr(clustering.CentroidInitialization, _INIT[spec.init])
    wrapped = clustering.cluster_weights(
        copy_model(parent), number_of_clusters=spec.clusters, cluster_centroids_init=init, preserve_sparsity=preserve
    )
    log(f"[compress] {step.name}: {spec.clusters} clusters ({spec.init}{', keeping zeros' if preserve else ''}), {spec.epochs} epochs")
    fine_tune(wrapped, data, recipe, spec.epochs, spec.learning_rate, log, callbacks=callbacks, name=step.name)
    return clustering.strip_clustering(wrapped)
