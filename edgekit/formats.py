"""The format table: every deployable format edgekit knows, one row each.

Adding a format means one converter module in ``edgekit/convert/``, one runtime module in
``edgekit/runtimes/``, its options class and one row here (or ``register(Format(...))`` from
outside edgekit). Nothing else in edgekit names a format: the recipe schema, the environment's
package versions, the cache keys, the recipe tables, the reports, ``edgekit bench`` and the
targets all read this table. Modules are named as ``module:function`` strings so that reading
the table never imports TensorFlow, and so that a row pickles into a worker process as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The ways an artifact can be run: a row's ``runs_with`` lists those its artifacts allow, a target
#: kind's ``Target.offers`` those it provides, and a target times a row where the two meet. A
#: format never names a target kind, so a new kind that offers ``SESSION`` runs every such format.
#: SESSION: the row's runtime session (``Format.runtime``) in a Python that has one of its
#: ``runtime_packages``, on a CPU (this machine's, an ssh device's runner).
SESSION = "session"
#: GPU_SESSION: the same session on a GPU (onnxruntime's CUDAExecutionProvider).
GPU_SESSION = "gpu-session"
#: TFLITE_MICRO: a full-integer flatbuffer, run in the TFLite Micro interpreter.
TFLITE_MICRO = "tflite-micro"
#: VELA: a full-integer flatbuffer, compiled for an Arm Ethos-U NPU by Vela.
VELA = "vela"


class FormatOptions(BaseModel):
    """Options of one format, set in the recipe under ``export.<format>``; both the converter
    and the runtime receive them. Defaults are the settings measured best on x86 CPUs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN or infinity is never a valid setting


class TFLiteOptions(FormatOptions):
    io: Literal["int8", "uint8"] = Field(
        "int8", description="the dtype of a full-integer int8 row's float inputs and outputs: int8, or uint8 (what "
        "image pipelines on devices feed: a model that expects pixels 0..255 takes them as they are, scale 1 and zero "
        "point 0); each row's io and input contract give the scale and zero point")


class ONNXOptions(FormatOptions):
    # Activations must be uint8: with int8 activations (onnxruntime's own default) most QDQ
    # convs of a ResNet-8 stayed float and int8 ran slower than fp32 (289 vs 230 us). QDQ is as
    # fast as QOperator here and is the portable layout. Per-channel, reduce_range and
    # Percentile bought no accuracy; Entropy gave exactly the MinMax ranges.
    opset: int = Field(17, ge=13, le=18, description="ONNX opset (13..18, what tf2onnx 1.17 writes)")
    quant_format: Literal["QDQ", "QOperator"] = "QDQ"
    per_channel: bool = False
    calibrate_method: Literal["MinMax", "Entropy", "Percentile"] = "MinMax"
    activation_type: Literal["uint8", "int8"] = "uint8"
    weight_type: Literal["uint8", "int8"] = "int8"
    reduce_range: bool = False
    graph_optimization_level: Literal[
        "ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"
    ] = "ORT_ENABLE_ALL"


class OpenVINOOptions(FormatOptions):
    # Full bias correction kept a ResNet-8 at fp32 accuracy where the fast one lost 3 points,
    # for about 0.5 s more conversion; "mixed" was neither more accurate nor faster.
    preset: Literal["performance", "mixed"] = Field("performance", description="NNCF int8 preset")
    fast_bias_correction: bool = Field(False, description="NNCF's faster, less accurate bias correction")
    # The CPU plugin's own default on AVX-512 BF16 / AMX CPUs is bf16 (1.68x faster than f32 on
    # a ResNet-8 here): a table of f32 rows alone hides the fastest thing the hardware offers.
    # Without AMX the same rows ran 0.45-0.83x of f32 (vdpbf16ps at half the FMA rate): the row
    # is added only where a short matmul probe runs bf16 at least as fast (edgekit.convert.auto).
    auto_bf16: bool = Field(True, description="on a CPU with AVX-512 BF16 or AMX, add an openvino bf16 row for the base "
                            "model (the fp32 IR run at the plugin's native bf16) when fp32 is among the precisions, "
                            "without listing bf16, where a one-second matmul probe (once per machine) runs bf16 at "
                            "least as fast as f32; results.json auto_precisions says why it was or was not added")


@dataclass(frozen=True)
class NativeBench:
    """A runtime's own benchmark tool: what ``edgekit verify`` checks edgekit's p50 against.

    Attributes:
        tool: the command (found on PATH or beside edgekit's Python).
        install: what to install when it is missing.
        run: ``module:function``, ``(tool, artifact, row, bench, threads, runs, timeout_s, **options)
            -> edgekit.bench.verify.Native``: one run of the tool on a results row's artifact.
        options: ``module:function``, ``row -> {RowCheck field: value}``: settings read from the
            row before the tool runs (reported even when it cannot run), passed on to ``run``.
    """

    tool: str
    install: str
    run: str
    options: str = ""

    def load_run(self):
        return _resolve(self.run)

    def load_options(self):
        return _resolve(self.options) if self.options else (lambda row: {})


@dataclass(frozen=True)
class Format:
    """One row of the format table.

    Attributes:
        name: the name used in recipes and row ids.
        suffix: file suffix of the artifact.
        precisions: precisions the converter can produce.
        converter: ``module:function`` that turns a Keras model into an artifact file.
        runtime: ``module:function`` that opens an artifact as a runtime session.
        runtime_packages: import names of the runtime, any one of which is enough.
        description: one line for ``edgekit formats``.
        weights: ``module:function`` that reads the weight tensors back from an artifact (the
            module may also have ``why_no_weights(path)``, said where it finds no weight matrix).
        options: the pydantic model of ``export.<name>`` in the recipe.
        companions: suffixes of files that belong to the artifact besides ``path``.
        label: how reports and the recipe tables name the format ("TFLite"); the name if empty.
        runs_with: the ways its artifacts can be run (``SESSION``, ``GPU_SESSION``,
            ``TFLITE_MICRO``, ``VELA``, or a plugin's own); a target times the row where its
            kind offers one of them (``Target.offers``), so a format is never sent where its
            runtime cannot run, and never names a target kind.
        packages: the distributions whose versions decide its artifacts and sessions (the
            converter's and the runtime's): recorded in results.json and part of its cache keys,
            so upgrading one format's packages recomputes that format's entries only.
        native_isa: ``(precision, flags)`` pairs: the precision runs natively only on a CPU with
            one of these ISA flags (``edgekit.environment.cpu_info``); elsewhere its rows are
            skipped with a reason (recipes travel between machines).
        auto_precisions: precisions added to the base model's rows, right after fp32, wherever
            this machine runs them natively, fp32 is among the recipe's precisions, and the
            format's ``auto_<precision>`` option is not false.
        auto_probe: ``(precision, "module:function")`` pairs: before an automatic precision is
            added, ``function(precision, threads)`` times it against f32 on this CPU
            (``edgekit.convert.auto``); the row is added only where it is as fast.
        intermediates: ``module:function`` that runs an artifact over samples and returns its
            activation tensors, dequantized (``read_intermediates``; ``edgekit.evaluate.layer_error``
            compares them with the Keras layers' outputs); empty: no per-layer error.
        native_bench: the runtime's own benchmark tool (``edgekit verify``), if it has one.
        no_native_bench: why it has none, for the rows ``edgekit verify`` cannot check.
        user_settings: ``module:function``, ``row settings -> dict``: the runtime settings a user
            passes to reproduce a row, in the runtime's own terms (the input contract's
            ``runtime``, ``edgekit.report.contract``); empty: the row's settings as they are.
    """

    name: str
    suffix: str
    precisions: tuple[str, ...]
    converter: str
    runtime: str
    runtime_packages: tuple[str, ...]
    description: str
    weights: str = ""
    options: type[FormatOptions] = FormatOptions
    companions: tuple[str, ...] = ()
    label: str = ""
    runs_with: tuple[str, ...] = (SESSION,)
    packages: tuple[str, ...] = ()
    native_isa: tuple[tuple[str, tuple[str, ...]], ...] = ()
    auto_precisions: tuple[str, ...] = ()
    intermediates: str = ""
    auto_probe: tuple[tuple[str, str], ...] = ()
    native_bench: NativeBench | None = None
    no_native_bench: str = ""
    user_settings: str = ""

    @property
    def title(self) -> str:
        """The name reports show: ``label``, else ``name``."""
        return self.label or self.name

    @property
    def converter_module(self) -> str:
        return self.converter.partition(":")[0]

    @property
    def runtime_module(self) -> str:
        return self.runtime.partition(":")[0]

    @property
    def weights_module(self) -> str:
        return self.weights.partition(":")[0]

    def versions(self, installed: dict[str, str]) -> dict[str, str]:
        """The versions of ``packages`` in ``installed`` (distribution -> version; "" if absent)."""
        return {name: installed.get(name, "") for name in self.packages}

    def files(self, path: Path) -> list[Path]:
        """Every file of the artifact at ``path`` (OpenVINO's .xml comes with a .bin)."""
        return [path, *(path.with_suffix(suffix) for suffix in self.companions)]

    def load_converter(self):
        return _resolve(self.converter)

    def load_runtime(self):
        return _resolve(self.runtime)

    def load_weights_reader(self):
        return _resolve(self.weights)

    def load_user_settings(self):
        """The ``user_settings`` function; where there is none, one that returns a row's settings."""
        return _resolve(self.user_settings) if self.user_settings else (lambda settings: dict(settings))

    def load_intermediates_reader(self):
        """The ``intermediates`` reader; ValueError where the format has none."""
        if not self.intermediates:
            raise ValueError(f"format {self.name!r} cannot read its intermediate tensors (no intermediates reader)")
        return _resolve(self.intermediates)

    def skip_reason(self, precision: str, isa: list[str] | tuple[str, ...] | None = None) -> str | None:
        """Why ``precision`` does not run natively on a CPU with ISA flags ``isa`` (default:
        this machine's), or None where it does (or needs nothing special)."""
        needs = dict(self.native_isa).get(precision)
        if not needs:
            return None
        isa = host_isa() if isa is None else isa
        if any(flag in isa for flag in needs):
            return None
        return (f"{self.name} {precision} needs a CPU with {' or '.join(needs)} (this one has neither), "
                f"where the runtime would not run {precision} natively")

    def native_precisions(self, isa: list[str] | tuple[str, ...] | None = None) -> tuple[str, ...]:
        """The precisions this format runs on a CPU with ``isa`` (default: this machine's): all but
        those whose ISA extension (``native_isa``) it lacks."""
        return tuple(p for p in self.precisions if self.skip_reason(p, isa) is None)

    def precisions_for(self, listed, options=None, isa=None) -> list[str]:
        """The precisions of ``listed`` this format builds rows for, plus its ``auto_precisions``
        that run natively here (after fp32, when fp32 is listed and ``options`` do not turn
        them off: ``auto_<precision>: false``) and, on this machine (``isa`` None), fast: as
        fast as fp32 by the format's ``auto_probe`` (``edgekit.convert.auto.decide``). Listed
        ones it cannot produce stay in (the caller reports them)."""
        out = list(listed)
        if "fp32" in out:
            at = out.index("fp32") + 1
            for precision in self.auto_candidates(listed, options, isa):
                if isa is None:
                    from edgekit.convert.auto import decide

                    if not decide(self, precision)["added"]:
                        continue
                out.insert(at, precision)
                at += 1
        return out

    def auto_candidates(self, listed, options=None, isa=None) -> list[str]:
        """The ``auto_precisions`` that ``listed`` and ``options`` leave to be added and that
        run natively on a CPU with ``isa`` (default: this one), before any speed probe."""
        if "fp32" not in listed:
            return []
        return [precision for precision in self.auto_precisions
                if precision not in listed and self.skip_reason(precision, isa) is None
                and (getattr(options, f"auto_{precision}", True) if options is not None else True)]

    def installed_runtime(self) -> str | None:
        """Return the name of the first installed runtime package, or None."""
        for module in self.runtime_packages:
            if importlib.util.find_spec(module) is not None:
                return module
        return None


@lru_cache(maxsize=1)
def host_isa() -> tuple[str, ...]:
    """This machine's ISA flags (the device runner's reading, as ``edgekit.environment`` uses:
    the environment imports this table, so the table reads the runner itself), once per process."""
    from edgekit.targets.runner import cpu_info

    return tuple(cpu_info()[1])


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
            precisions=("fp32", "fp16", "dynamic", "int8", "int8-mixed", "int8-fast", "int16x8"),
            converter="edgekit.convert.tflite:convert",
            weights="edgekit.convert.tflite:read_weights",
            intermediates="edgekit.convert.tflite:read_intermediates",
            runtime="edgekit.runtimes.litert:open_session",
            user_settings="edgekit.runtimes.litert:user_settings",
            runtime_packages=("ai_edge_litert", "tflite_runtime"),
            description="TFLite / LiteRT flatbuffer, run in the LiteRT interpreter",
            options=TFLiteOptions,
            label="TFLite",
            # the full-integer flatbuffers also run in TFLite Micro and compile for Ethos-U
            runs_with=(SESSION, TFLITE_MICRO, VELA),
            packages=("tensorflow", "tf-keras", "ai-edge-litert", "tflite-runtime"),
            native_bench=NativeBench("litert-benchmark", "pip install ai-edge-litert", "edgekit.bench.verify:litert_row"),
        ),
        Format(
            name="onnx",
            suffix=".onnx",
            precisions=("fp32", "int8", "int8-mixed", "int8-fast"),
            converter="edgekit.convert.onnx:convert",
            weights="edgekit.convert.onnx:read_weights",
            intermediates="edgekit.convert.onnx:read_intermediates",
            runtime="edgekit.runtimes.onnxruntime:open_session",
            user_settings="edgekit.runtimes.onnxruntime:user_settings",
            runtime_packages=("onnxruntime",),
            description="ONNX via tf2onnx, int8 by onnxruntime static quantization, run in onnxruntime (CPU)",
            options=ONNXOptions,
            label="ONNX",
            # onnxruntime's CUDAExecutionProvider runs it on a GPU
            runs_with=(SESSION, GPU_SESSION),
            packages=("tensorflow", "tf-keras", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu"),
            no_native_bench="onnxruntime ships no benchmark tool (no onnxruntime_perf_test in the pip wheel; "
                            "its onnxruntime_test script cannot set threads and reports only a mean)",
        ),
        Format(
            name="openvino",
            suffix=".xml",
            precisions=("fp32", "bf16", "int8", "int8-mixed", "int8-fast"),
            converter="edgekit.convert.openvino:convert",
            weights="edgekit.convert.openvino:read_weights",
            intermediates="edgekit.convert.openvino:read_intermediates",
            runtime="edgekit.runtimes.openvino:open_session",
            user_settings="edgekit.runtimes.openvino:user_settings",
            runtime_packages=("openvino",),
            description="OpenVINO IR (.xml + .bin), int8 by NNCF, run on OpenVINO's CPU plugin at f32 precision "
                        "(bf16: the fp32 IR at the plugin's native bf16, on AVX-512 BF16 / AMX CPUs)",
            options=OpenVINOOptions,
            companions=(".bin",),
            label="OpenVINO",
            packages=("tensorflow", "tf-keras", "openvino", "nncf"),
            native_isa=(("bf16", ("avx512_bf16", "amx_bf16")),),
            auto_precisions=("bf16",),
            auto_probe=(("bf16", "edgekit.runtimes.openvino:precision_probe"),),
            native_bench=NativeBench("benchmark_app", "pip install openvino", "edgekit.bench.verify:openvino_row",
                                     options="edgekit.bench.verify:openvino_options"),
        ),
    ]
}

PRECISIONS = ("fp32", "fp16", "bf16", "dynamic", "int8", "int8-mixed", "int8-fast", "int16x8")
#: int8 precisions: rows whose per-layer quantization error is measured (int8-mixed: int8 with the
#: layers that lose most kept float, see quantize.max_drop; int8-fast: int8 with the layers whose
#: int8 kernels are slower on this CPU kept float, see edgekit.convert.fast)
INT8_PRECISIONS = ("int8", "int8-mixed", "int8-fast")

#: called with the table after every change, by modules that derive something from it at
#: import time (the recipe schema's ``export.<format>`` sections)
_listeners: list[Callable[[dict[str, Format]], None]] = []


def on_change(listener: Callable[[dict[str, Format]], None]) -> None:
    """Call ``listener(FORMATS)`` after every ``register`` and ``unregister``."""
    _listeners.append(listener)


def register(fmt: Format) -> Format:
    """Add (or replace) a row of the table, from outside edgekit: a plugin, a test, a worker
    process that received a row with its task. Registering the same row again does nothing.

    Raises:
        ValueError: a precision the recipe does not know, or a name a row id cannot carry.
    """
    if unknown := [p for p in fmt.precisions if p not in PRECISIONS]:
        raise ValueError(f"format {fmt.name!r}: unknown precision {unknown[0]!r}; choose from {', '.join(PRECISIONS)}")
    if not fmt.name.isidentifier() or fmt.name in ("keras", "formats"):
        raise ValueError(f"format name {fmt.name!r}: expected a lower-case identifier other than keras and formats")
    if FORMATS.get(fmt.name) == fmt:
        return fmt
    FORMATS[fmt.name] = fmt
    _changed()
    return fmt


def unregister(name: str) -> None:
    """Remove a row added by ``register`` (a test cleaning up after itself)."""
    if FORMATS.pop(name, None) is not None:
        _changed()


@contextmanager
def registered(fmt: Format) -> Iterator[Format]:
    """``register(fmt)`` for the duration of a ``with`` block, restoring the table after."""
    previous = FORMATS.get(fmt.name)
    register(fmt)
    try:
        yield fmt
    finally:
        unregister(fmt.name)
        if previous is not None:
            register(previous)


def _changed() -> None:
    for listener in _listeners:
        listener(FORMATS)


def packages() -> tuple[str, ...]:
    """Every distribution some row names, in table order, once each."""
    return tuple(dict.fromkeys(name for fmt in FORMATS.values() for name in fmt.packages))


def format_for_suffix(suffix: str) -> Format | None:
    """The format whose artifacts end in ``suffix`` (".tflite", ".onnx", ".xml"), if any."""
    return next((fmt for fmt in FORMATS.values() if fmt.suffix == suffix), None)
