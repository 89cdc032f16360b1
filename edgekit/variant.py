"""A variant: one Keras model in one format and precision, its artifact, its runtime session,
what evaluating it found; or the reason it failed. And the build context every conversion of a
build shares. Every stage from convert on passes these along."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgekit.errors import one_line
from edgekit.formats import FORMATS


@dataclass
class Variant:
    """One artifact in its runtime (or the Keras model itself for the baseline)."""

    format: str
    precision: str
    model: str = "base"
    parent: str | None = None
    path: Path | None = None
    session: Any = None
    status: str = "ok"
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    #: a model of several outputs: each one's task, metrics and parity ({name: {"task",
    #: "primary_metric", "metrics", "parity", "headline"}}, ``edgekit.evaluate.scores.output_scores``)
    outputs: dict[str, Any] = field(default_factory=dict)
    #: the artifact's inputs and outputs as its session ran them ({"inputs": [...], "outputs":
    #: [...]}, each ``edgekit.runtimes.TensorInfo.to_dict``)
    io: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    runtime: str | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    gzip_bytes: int | None = None
    #: int8 rows: how far each Keras layer's output drifts from the float model's
    #: (``edgekit.evaluate.layer_error``): {"metric", "how", "samples", "layers": [worst first]}
    layer_error: dict[str, Any] = field(default_factory=dict)
    #: cache key of what this variant is (its artifact, or the Keras model for the baseline)
    key: str | None = None
    #: seconds this variant's own steps took where they ran ({"convert": s, "evaluate": s}; a worker
    #: process for converted variants): what results.json ``stages`` sums
    seconds: dict[str, float] = field(default_factory=dict)
    #: opens the runtime session when it is first needed (a cached evaluation needs none)
    opener: Callable[[], Any] | None = field(default=None, repr=False)

    def ensure_session(self) -> None:
        if self.session is None and self.opener is not None:
            self.session = self.opener()

    @property
    def stem(self) -> str:
        """Row id without the target: ``tflite-int8`` for the base model, ``pruned80-tflite-int8`` otherwise."""
        prefix = "" if self.model == "base" else f"{self.model}-"
        return f"{prefix}{self.format}-{self.precision}"

    def identity(self) -> dict[str, str]:
        """What a cache entry of this variant holds, as its manifest records it."""
        return {"model": self.model, "format": self.format, "precision": self.precision}

    @property
    def files(self) -> list[Path]:
        """Every file of the artifact (OpenVINO's .xml comes with a .bin)."""
        if self.path is None:
            return []
        return FORMATS[self.format].files(self.path) if self.format in FORMATS else [self.path]

    @property
    def size_bytes(self) -> int | None:
        files = [f for f in self.files if f.exists()]
        return sum(f.stat().st_size for f in files) if files else None

    def fail(self, stage: str, exc: BaseException | str) -> None:
        self.status = "failed"
        self.reason = f"{stage} failed: {exc if isinstance(exc, str) else one_line(exc)}"
        self.session = None


@dataclass
class BuildContext:
    """What every conversion of a build shares."""

    recipe: Any
    data: Any
    baseline_outputs: Any
    run_dir: Path
    log: Callable[[str], None]
    cache: Any
    data_key: str
    versions: dict[str, str]
