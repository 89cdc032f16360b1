"""The format table: every deployable format edgekit knows, one row each.

Adding a format means one converter module in ``edgekit/convert/``, one runtime module in
``edgekit/runtimes/`` and one row here. Nothing else in edgekit branches on format names.
Modules are named as strings so that reading this table never imports TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """One row of the format table.

    Attributes:
        name: the name used in recipes and row ids.
        suffix: file suffix of the artifact.
        precisions: precisions the converter can produce.
        converter: ``module:function`` that turns a Keras model into an artifact file.
        runtime: ``module:function`` that opens an artifact as a runtime session.
        runtime_packages: distributions that provide the runtime, any one of which is enough.
        description: one line for ``edgekit formats``.
    """

    name: str
    suffix: str
    precisions: tuple[str, ...]
    converter: str
    runtime: str
    runtime_packages: tuple[str, ...]
    description: str

    def load_converter(self):
        return _resolve(self.converter)

    def load_runtime(self):
        return _resolve(self.runtime)

    def installed_runtime(self) -> str | None:
        """Return the name of the first installed runtime package, or None."""
        for module in self.runtime_packages:
            if importlib.util.find_spec(module) is not None:
                return module
        return None


def _resolve(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


# The Keras model itself is the baseline row; it is not in this table because it is never
# converted, only saved (see pipeline.py).
FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in [
        Format(
            name="tflite",
            suffix=".tflite",
            precisions=("fp32", "int8"),
            converter="edgekit.convert.tflite:convert",
            runtime="edgekit.runtimes.litert:open_session",
            runtime_packages=("ai_edge_litert", "tflite_runtime"),
            description="TFLite / LiteRT flatbuffer, run in the LiteRT interpreter",
        ),
    ]
}

PRECISIONS = ("fp32", "int8")
