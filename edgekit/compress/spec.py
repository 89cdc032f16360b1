"""The recipe's ``compress:`` section (pydantic; light imports only): a list of compressed
models, each made from the trained fp32 model with tensorflow-model-optimization.

    compress:
      - prune: {sparsity: 0.8}          # -> pruned80
      - prune: {structured: "2:4"}      # -> pruned2of4
      - cluster: {clusters: 16}         # -> clustered16
      - qat: {epochs: 3}                # -> qat
      - prune: {sparsity: 0.8}          # -> pruned80-pqat (sparsity-preserving QAT,
        qat: {epochs: 3}                #    fine-tuned from the pruned80 model above)
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Spec(BaseModel):
    # NaN or infinity is never a valid setting, and every count has a sane upper bound.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PruneSpec(_Spec):
    """Magnitude pruning, then fine-tuning at the target sparsity."""

    sparsity: float = Field(0.5, gt=0, lt=1, description="share of each kernel set to zero")
    schedule: Literal["polynomial", "constant"] = Field(
        "polynomial", description="polynomial ramps sparsity up over the first 2/3 of fine-tuning; constant prunes at once"
    )
    structured: Literal["2:4"] | None = Field(
        None, description='"2:4": two zeros in every four consecutive weights (sparse tensor-core friendly); always 50%'
    )
    epochs: int = Field(3, gt=0, le=10_000, description="fine-tuning epochs while pruning")
    learning_rate: float | None = Field(None, gt=0, le=10, description="fine-tuning learning rate (default: train.learning_rate / 10)")

    @model_validator(mode="after")
    def _structured_is_half(self):
        if self.structured == "2:4" and "sparsity" in self.model_fields_set and self.sparsity != 0.5:
            raise ValueError(f"2:4 structured pruning always gives 50% sparsity, received sparsity {self.sparsity}; "
                             "remove sparsity or set it to 0.5")
        if self.structured == "2:4":
            self.sparsity = 0.5
        return self

    @property
    def name(self) -> str:
        return "pruned2of4" if self.structured else f"pruned{round(self.sparsity * 100)}"


class ClusterSpec(_Spec):
    """Weight clustering: every kernel keeps only ``clusters`` distinct values."""

    clusters: int = Field(16, ge=2, le=256, description="distinct values per weight tensor")
    init: Literal["kmeans++", "linear", "density", "random"] = Field("kmeans++", description="centroid initialisation")
    epochs: int = Field(2, gt=0, le=10_000, description="fine-tuning epochs")
    learning_rate: float | None = Field(None, gt=0, le=10, description="fine-tuning learning rate (default: train.learning_rate / 10)")

    @property
    def name(self) -> str:
        return f"clustered{self.clusters}"


class QATSpec(_Spec):
    """Quantization-aware training; sparsity- and cluster-preserving after prune/cluster."""

    epochs: int = Field(3, gt=0, le=10_000, description="QAT fine-tuning epochs")
    learning_rate: float | None = Field(None, gt=0, le=10, description="QAT learning rate (default: train.learning_rate / 10)")


class CompressEntry(_Spec):
    """One compressed model: the steps it applies, in the order prune -> cluster -> qat.

    Both prune and qat set: QAT keeps the sparsity (PQAT); cluster and qat: QAT keeps the
    clusters (CQAT); prune and cluster: clustering keeps the zeros; all three: PCQAT.
    """

    prune: PruneSpec | None = None
    cluster: ClusterSpec | None = None
    qat: QATSpec | None = None
    precisions: list[str] | None = Field(None, description="export precisions of this model (default: quantize.precisions)")

    @model_validator(mode="after")
    def _something(self):
        if not (self.prune or self.cluster or self.qat):
            raise ValueError("a compress entry needs at least one of prune, cluster or qat")
        return self

    @property
    def name(self) -> str:
        parts = [p.name for p in (self.prune, self.cluster) if p]
        if self.qat:
            parts.append({(True, False): "pqat", (False, True): "cqat", (True, True): "pcqat"}.get(
                (bool(self.prune), bool(self.cluster)), "qat"))
        return "-".join(parts)


def unique_names(entries: list[CompressEntry]) -> list[CompressEntry]:
    counts = Counter(entry.name for entry in entries)  # linear: a recipe may hold thousands of entries
    duplicates = sorted(name for name, n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"two compress entries make the same model ({', '.join(duplicates)}); remove one or change its settings")
    return entries
