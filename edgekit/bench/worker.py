"""A target's rows timed in the build's worker process, when this process cannot time the Keras
baseline fairly.

TensorFlow fixes its thread pools at its first op. A build that trained here started it with
``train.threads`` (every core by default), so a Keras row timed here would run on more threads
than every other row (``benchmark.threads``), and on a small model more threads are slower
(thread hand-offs cost more than the ops). The build's workers start TensorFlow with
``benchmark.threads`` (``edgekit.evaluate.worker.prepare``), and sit idle once every variant is
converted: the rows of the target are timed there instead, all together in interleaved rounds
as always. Nothing else runs on the machine meanwhile: this process only waits for the result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class SessionSpec:
    """How a worker opens one row's session: a format-table artifact, or the Keras model file."""

    format: str  # a format-table name, or "keras"
    path: Path
    options: dict = dataclasses.field(default_factory=dict)
    keras: str = "tf_keras"  # which Keras reads a "keras" file
    custom_layers: tuple[tuple[str, str], ...] = ()
    import_dirs: tuple[str, ...] = ()


def spec_of(variant, recipe) -> SessionSpec | None:
    """The SessionSpec of ``variant`` (opened as the build opens it: the recipe's export options
    of its format), or None when it cannot travel (no file, an unknown format)."""
    from edgekit.formats import FORMATS

    if variant.path is None or not Path(variant.path).is_file():
        return None
    if variant.format in FORMATS:
        options = getattr(recipe.export, variant.format).model_dump()
        if (variant.settings or {}).get("input_shapes"):  # free dimensions `edgekit bench` fixed
            options["input_shapes"] = variant.settings["input_shapes"]
        return SessionSpec(variant.format, Path(variant.path), options)
    if variant.format != "keras":
        return None
    from edgekit.models.files import builder_import_dirs, custom_layers, keras_flavour

    variant.ensure_session()
    model = getattr(variant.session, "model", None)
    if model is None:
        return None
    return SessionSpec("keras", Path(variant.path), {}, keras_flavour(model), custom_layers(model),
                       builder_import_dirs(recipe))


def time_group(specs: list[SessionSpec], samples, spec, seed: int) -> list[Any]:
    """In a worker: open every session and time them together (``targets.cpu.time_together``);
    a session that does not open fails its own row. Each block timed is reported to the build
    (``progress``, "done/total"), between blocks, never during one."""
    from edgekit.errors import one_line
    from edgekit.executors.base import report
    from edgekit.formats import FORMATS
    from edgekit.targets.base import Measurement
    from edgekit.targets.cpu import time_together

    sessions, out = [], [None] * len(specs)
    for i, s in enumerate(specs):
        try:
            if s.format == "keras":
                from edgekit.models.files import load_build_model
                from edgekit.runtimes import keras as keras_runtime

                model = load_build_model(s.path, s.keras, False, s.import_dirs, s.custom_layers)
                sessions.append((i, keras_runtime.open_session(model, spec.threads)))
            else:
                sessions.append((i, FORMATS[s.format].load_runtime()(s.path, spec.threads, s.options or None)))
        except Exception as exc:  # noqa: BLE001 - one broken artifact fails its own row
            out[i] = Measurement("failed", f"benchmark failed: {one_line(exc)}")
    timed = time_together([session for _, session in sessions], spec, samples, seed,
                          on_block=lambda done, total: report("progress", f"{done}/{total}"))
    for (i, _), measurement in zip(sessions, timed):
        out[i] = measurement
    return out
