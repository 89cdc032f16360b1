"""The recipe's ``search:`` section (pydantic; light imports only): the space of compression and
quantization settings to try, the objective, the constraints and the strategy.

    search:
      space:
        prune: [none, 0.5, 0.75, "2:4"]    # a sparsity, "2:4" structured, or {sparsity:, epochs:, ...}
        cluster: [none, 16]                # a cluster count, or {clusters:, epochs:, init:}
        qat: [false, true]                 # QAT (int8 only) or PTQ; or {epochs: 5}
        format: [tflite, onnx]
        precision: [int8, int8-mixed, fp16]
        calibration_samples: [64, 256]
      objective: p50                       # p50 | size | memory, on `target`
      target: cpu
      constraints: {max_metric_drop: 0.01}
      strategy: auto                       # grid when the space fits max_trials, else tpe (Optuna)
      max_trials: 24

Each point of the space becomes one trial: a recipe of its own (``edgekit.search.space``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgekit.compress.spec import ClusterSpec, PruneSpec, QATSpec

#: what a recipe may write for "not this step"
_NONE = (None, False, "none", "None", "no", "off")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _prune(value: Any) -> dict | None:
    if value in _NONE:
        return None
    if value == "2:4":
        value = {"structured": "2:4"}
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"sparsity": float(value)}
    if not isinstance(value, dict):
        raise ValueError(f'expected none, a sparsity (0 < s < 1), "2:4" or a prune mapping, received {value!r}')
    return PruneSpec.model_validate(value).model_dump(exclude_none=True)


def _cluster(value: Any) -> dict | None:
    if value in _NONE:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"clusters": value}
    if not isinstance(value, dict):
        raise ValueError(f"expected none, a cluster count (2-256) or a cluster mapping, received {value!r}")
    return ClusterSpec.model_validate(value).model_dump(exclude_none=True)


def _qat(value: Any) -> dict | None:
    if value in _NONE:
        return None
    if value is True or value in ("yes", "on", "qat"):
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"expected false (post-training quantization), true (QAT) or a qat mapping such as "
                         f"{{epochs: 5}}, received {value!r}")
    return QATSpec.model_validate(value).model_dump(exclude_none=True)


class Space(_Strict):
    """The settings to search; each list holds the values tried (a dimension left out keeps the
    recipe's own setting)."""

    prune: list[Any] = Field(default_factory=lambda: [None], min_length=1, max_length=64,
                             description='none, a sparsity (0.5), "2:4" (structured), or {sparsity:, epochs:, schedule:}')
    cluster: list[Any] = Field(default_factory=lambda: [None], min_length=1, max_length=64,
                               description="none, a cluster count (16), or {clusters:, epochs:, init:}")
    qat: list[Any] = Field(default_factory=lambda: [None], min_length=1, max_length=8,
                           description="false (post-training quantization), true (quantization-aware training, "
                           "int8 only), or {epochs:}")
    format: list[str] | None = Field(None, min_length=1, max_length=16,
                                     description="formats to try (default: the recipe's export.formats)")
    precision: list[str] | None = Field(None, min_length=1, max_length=16,
                                        description="precisions to try (default: the recipe's quantize.precisions)")
    per_channel: list[bool] | None = Field(None, min_length=1, max_length=2, description="per-channel (true) or "
                                           "per-tensor (false) int8 weights, where the format has the option "
                                           "(export.<format>.per_channel)")
    calibration_samples: list[int] | None = Field(None, min_length=1, max_length=16,
                                                  description="int8 calibration subset sizes (quantize.calibration_samples)")
    calibration_method: list[str] | None = Field(None, min_length=1, max_length=8, description="int8 calibration "
                                                 "methods, where the format has the option (export.<format>.calibrate_method)")
    mixed_max_drop: list[float] | None = Field(None, min_length=1, max_length=16, description="int8-mixed tolerance "
                                               "(quantize.max_drop): the metric drop on the validation split it keeps layers float for")
    settings: dict[str, list[Any]] = Field(default_factory=dict, max_length=16, description="any other recipe setting "
                                           "by its dotted path (\"train.epochs\": [10, 20]; \"export.onnx.reduce_range\": "
                                           "[false, true] applies to onnx trials only)")

    @field_validator("prune")
    @classmethod
    def _prunes(cls, values: list) -> list:
        return [_prune(v) for v in values]

    @field_validator("cluster")
    @classmethod
    def _clusters(cls, values: list) -> list:
        return [_cluster(v) for v in values]

    @field_validator("qat")
    @classmethod
    def _qats(cls, values: list) -> list:
        return [_qat(v) for v in values]

    @field_validator("settings")
    @classmethod
    def _paths(cls, value: dict) -> dict:
        for path, values in value.items():
            parts = path.split(".")
            if len(parts) < 2 or not all(parts) or parts[0] in ("name", "search", "compress", "targets"):
                raise ValueError(f"settings: {path!r}: expected a dotted path of a recipe setting such as "
                                 "train.epochs or export.onnx.reduce_range (not name, search, compress or targets)")
            if not isinstance(values, list) or not values:
                raise ValueError(f"settings: {path!r}: expected a non-empty list of values")
        return value


class Constraints(_Strict):
    """What the pick must meet on the search's target."""

    max_metric_drop: float | None = Field(0.01, ge=0, description="largest drop of the primary metric against the "
                                          "Keras fp32 baseline, in the metric's units (0.01: one point of accuracy)")
    max_size_bytes: int | None = Field(None, gt=0, description="largest artifact size in bytes")
    max_memory_bytes: int | None = Field(None, gt=0, description="largest memory of the row: peak resident growth "
                                         "(memory.peak_bytes, profiled) or an mcu target's tensor arena")


class EarlyStop(_Strict):
    """Trials that fine-tune (prune, cluster, QAT) first fine-tune for ``epochs`` only; one whose
    Keras metric is then worse than the budget by more than ``slack`` is stopped there, never
    converted or timed."""

    epochs: int = Field(1, gt=0, le=1000, description="epochs of the short fine-tune")
    slack: float = Field(0.05, ge=0, description="how far past max_metric_drop the short fine-tune may be "
                         "(a full fine-tune wins some of it back)")


class SearchSpec(_Strict):
    """A search for the variant to ship (``edgekit search RECIPE``)."""

    space: Space = Field(default_factory=Space)
    objective: Literal["p50", "size", "memory"] = Field("p50", description="what the pick minimises on target")
    target: str = Field("cpu", description="the target the objective and constraints read (one of the recipe's targets)")
    constraints: Constraints = Field(default_factory=Constraints)
    strategy: Literal["auto", "grid", "tpe"] = Field("auto", description="grid: every point; tpe: Optuna's TPE "
                                                     "sampler (pip install 'keras-edgekit[search]'); auto: grid when the "
                                                     "space has at most max_trials points, else tpe")
    max_trials: int = Field(24, gt=0, le=10_000, description="trials a tpe search runs (a grid runs every point)")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the sampler's seed (default: the recipe's seed)")
    early_stop: EarlyStop | None = Field(default_factory=EarlyStop, description="short fine-tune first; false: off")
    parallel: int | None = Field(None, gt=0, le=1024, description="trials in flight at once on a cluster "
                                 "(default: its workers); the local executor runs one at a time")

    @field_validator("early_stop", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return None if value is False else value
