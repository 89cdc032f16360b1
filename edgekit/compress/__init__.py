"""Compressed variants of the trained model (tensorflow-model-optimization, Keras 2 only).

``plan(entries)`` turns the recipe's ``compress`` list into steps, parents before children:
each entry is a chain prune -> cluster -> qat from the base model, and chains share their
common prefixes (``pruned80`` is made once for ``pruned80`` and ``pruned80-pqat``). Only the
last model of each entry is exported. Nothing here imports TensorFlow until a step runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One compressed model: ``name`` made from ``parent`` by ``kind`` with ``spec``."""

    name: str
    parent: str
    kind: str  # prune | cluster | qat
    spec: Any
    #: what the step must keep from its parent: None, "prune", "cluster" or "prune+cluster"
    preserve: str | None = None
    #: exported (the last step of a recipe entry), with these precisions (None: the recipe's)
    export: bool = False
    precisions: tuple[str, ...] | None = None

    @property
    def quantized(self) -> bool:
        """QAT models carry their own int8 ranges: they convert to int8 only, uncalibrated."""
        return self.kind == "qat"


def plan(entries) -> list[Step]:
    """The steps to make every entry's model, each named once, parents first."""
    steps: dict[str, Step] = {}
    for entry in entries:
        parent, names, kept = "base", [], []
        chain = [("prune", entry.prune), ("cluster", entry.cluster), ("qat", entry.qat)]
        chain = [(kind, spec) for kind, spec in chain if spec is not None]
        for position, (kind, spec) in enumerate(chain):
            last = position == len(chain) - 1
            name = entry.name if last else "-".join([*names, spec.name])
            preserve = "+".join(kept) or None
            step = steps.get(name) or Step(name, parent, kind, spec, preserve=preserve)
            if last:
                step = Step(step.name, step.parent, step.kind, step.spec, step.preserve, export=True,
                            precisions=tuple(entry.precisions) if entry.precisions else None)
            steps[name] = step
            parent = name
            if kind != "qat":
                names.append(spec.name)
                kept.append(kind)
    return list(steps.values())


def make(step: Step, parent_model, data, recipe, log, callbacks=()) -> Any:
    """Run one compression step on a copy of ``parent_model`` and return the new Keras model.

    ``callbacks`` (TensorBoard's, ``edgekit.train.tensorboard``) join its fine-tuning fit."""
    from edgekit.compress import cluster, prune, qat

    run = {"prune": prune.prune, "cluster": cluster.cluster, "qat": qat.quantize_aware}[step.kind]
    return run(parent_model, step, data, recipe, log, callbacks=tuple(callbacks))
