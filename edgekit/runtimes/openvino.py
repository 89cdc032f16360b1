"""OpenVINO runtime: an IR (.xml + .bin) compiled for the CPU plugin.

Shipped to devices as it is: stdlib + numpy + openvino only (see edgekit.runtimes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.runtimes import Session, cast_input, package_version

if TYPE_CHECKING:  # imported lazily at run time, after telemetry is switched off
    import openvino


def disable_telemetry() -> None:
    """Make OpenVINO's usage telemetry act as if the user had opted out, for this process.

    Unless ``opt_in_out --opt_out`` was run, openvino_telemetry assumes consent: ``import
    openvino`` sends a Google Analytics event, convert_model about 13 and nncf.quantize a few
    more, each from a forked process with a 3 s timeout. Builds must work offline, and a fork
    mid-benchmark disturbs the timings. Call before the first ``import openvino``; the user's
    consent file is left alone.
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import (
            ConsentCheckResult,
            OptInChecker,
        )
    except ImportError:  # no telemetry package: openvino falls back to a silent stub
        return
    # OpenVINO, ovc and NNCF share one Telemetry object, and each (re)initialisation decides
    # consent through this check; a declined Telemetry sends nothing.
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED


class OpenVINOSession(Session):
    """An IR compiled for "CPU" with one reused infer request."""

    timed_call = "set_input_tensor + infer(share_outputs=True) + get_output_tensor(0).data"

    def __init__(self, path: Path, threads: int):
        disable_telemetry()
        import openvino as ov

        self._ov = ov
        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(threads),
            # On CPUs with AVX-512 BF16 or AMX the plugin defaults to bf16 and would quietly
            # run an "fp32" model at lower precision; precision is the converter's decision.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        self.compiled = core.compile_model(core.read_model(Path(path)), "CPU", config)
        # One request, reused, so the timed call holds no allocation or setup.
        self.request = self.compiled.create_infer_request()
        self.input_shape = tuple(int(d) for d in self.compiled.input(0).get_shape())
        # The IR's own input dtype: f32, or i32 for a model over token ids.
        self.input_dtype = _numpy_dtype(self.compiled.input(0).get_element_type())
        self.runtime = "openvino {}".format(package_version("openvino", module="openvino"))
        self.settings = {
            "device": "CPU",
            "performance_hint": str(self.compiled.get_property("PERFORMANCE_HINT")).split(".")[-1],
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "num_streams": int(self.compiled.get_property("NUM_STREAMS")),
            "inference_precision": self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            # Recorded to show what "f32" overrode on this machine (e.g. bf16).
            "cpu_default_precision": core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name(),
            "cpu_pinning": bool(self.compiled.get_property("ENABLE_CPU_PINNING")),
        }

    def prepare(self, x: np.ndarray) -> openvino.Tensor:
        # Wrap once, before the clock: infer({0: x}) would re-check and re-wrap the array on
        # every call, about 13 us of Python per inference (40% of a small CNN's latency).
        array = cast_input(x.reshape(self.input_shape), self.input_dtype)
        return self._ov.Tensor(array, shared_memory=True)

    def run(self, feed: openvino.Tensor) -> np.ndarray:
        self.request.set_input_tensor(feed)
        self.request.infer(share_outputs=True)
        return self.request.get_output_tensor(0).data

    def decode(self, raw: np.ndarray) -> np.ndarray:
        # The output is a view of the request's buffer, which the next run overwrites.
        return np.array(raw, dtype=np.float32)


def _numpy_dtype(element_type) -> np.dtype:
    """An OpenVINO element type as numpy; float32 where an older openvino has no Type.to_dtype."""
    try:
        return np.dtype(element_type.to_dtype())
    except (AttributeError, TypeError):
        return np.dtype(np.float32)


def open_session(path: Path, threads: int = 1, options: dict | None = None, *,
                 module: str | None = None) -> OpenVINOSession:
    """Compile an IR for the CPU at batch 1, f32 inference precision, latency hint.

    Args:
        path: the .xml file; its .bin must sit next to it.
        threads: CPU inference threads.
        options: fields of ``edgekit.formats.OpenVINOOptions`` (validated with the recipe);
            all of them are conversion options, accepted and ignored here.
        module: the runtime module the caller found (always ``openvino``).
    """
    return OpenVINOSession(Path(path), threads)
