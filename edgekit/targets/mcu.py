"""The ``mcu`` target kind: a microcontroller (Cortex-M, ESP32) described by devices/NAME.yaml
with ``kind: mcu``, its RAM and flash in kB. Its rows are the full-integer TFLite artifacts
(int8, int16x8) run in the TFLite Micro interpreter (the ``tflite-micro`` wheel) on this
machine, in a process of their own (edgekit.targets.mcu_run): a model that makes TFLM abort
fails its own row.

Each row says:

- op coverage: every op TFLM lacks (or a dynamic tensor) fails the row, named, with the fix;
- ``arena_bytes``: the smallest tensor arena the model allocates and runs in, on this 64-bit
  host (a 32-bit MCU's is somewhat smaller: TFLM's structs hold 4-byte pointers there);
- ``flash_bytes``: the model flatbuffer (the interpreter's code is not included);
- metrics from TFLM's own outputs on the test split (``evaluates``), and ``agreement`` with
  LiteRT's outputs of the same file;
- latency: host time in the interpreter (reference kernels on this CPU), labelled so, never a
  device latency;
- ``memory_limits``: arena + margin against ``ram_kb`` and the model against ``flash_kb``,
  which ``edgekit check`` judges;
- ``c_array``: artifacts/<row id>.cc and .h, the model as a 16-byte aligned C array with the
  arena size as a constant and an op resolver for exactly the model's operators, what an
  embedded project compiles in (edgekit.targets.c_source).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edgekit import lifeline
from edgekit.errors import shorten
from edgekit.formats import TFLITE_MICRO
from edgekit.runtimes import as_samples
from edgekit.targets.base import Measurement, Target
from edgekit.targets.c_source import c_identifier, in_a_build, write_c_array
from edgekit.targets.profiles import ProfileBase

#: the precisions that are full-integer models (of a format whose row lists TFLITE_MICRO in
#: runs_with: the TFLite flatbuffer, which TFLM reads)
PRECISIONS = ("int8", "int16x8")
#: longest one TFLM run (op check, arena search, test split, timing) may take
TIMEOUT_S = 900.0
#: the label every mcu row's latency carries
HOST_TIME = ("host time: TFLite Micro's reference kernels on this machine's CPU, not the microcontroller's "
             "latency; never compare it with device rows")

#: the layer to replace for ops TFLM lacks, where one is known; the rest get the generic fix
OP_FIXES = {
    "GELU": "use relu or hard_swish instead of gelu",
    "REDUCE_PROD": "replace the product reduction (tf.reduce_prod) with a sum or mean",
    "TOPK_V2": "take top-k on the application side, from the model's output",
    "LAYER_NORM": "use BatchNormalization instead of LayerNormalization",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "use a unidirectional LSTM (UNIDIRECTIONAL_SEQUENCE_LSTM has a kernel)",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "use an LSTM or a Conv1D model",
    "GRU": "use an LSTM (it has a kernel) or a Conv1D model",
    "FLEX": "keep to TFLite builtin ops: TensorFlow (select/flex) ops never run on a microcontroller",
}


class McuProfile(ProfileBase):
    """devices/NAME.yaml of kind mcu: the memory a microcontroller has for the model."""

    kind: Literal["mcu"] = Field(description="mcu: the TFLite Micro interpreter on this machine, with this device's budgets")
    ram_kb: float = Field(gt=0, description="RAM for the tensor arena and the rest of the application, in kB (1024 bytes)")
    flash_kb: float = Field(gt=0, description="flash for the model flatbuffer, in kB (1024 bytes); the interpreter's "
                            "code is not counted against it")
    arena_margin: float = Field(0.1, ge=0, le=10, description="headroom added to the measured tensor arena before it is "
                                "compared with ram_kb: 0.1 = 10% (the host's arena, stack and I/O buffers differ on the device)")
    cpu: str | None = Field(None, description="the core, for the report (e.g. Cortex-M4F at 80 MHz)")

    def describe(self) -> str:
        where = f"{self.cpu}, " if self.cpu else ""
        return f"{where}{self.ram_kb:g} kB RAM, {self.flash_kb:g} kB flash (TFLite Micro on this host)"

    @property
    def ram_bytes(self) -> int:
        return int(self.ram_kb * 1024)

    @property
    def flash_bytes(self) -> int:
        return int(self.flash_kb * 1024)

    def arena_needed(self, arena: int) -> int:
        """The arena with the profile's margin, rounded up to 16 bytes: what the device must reserve."""
        return -(-int(arena * (1 + self.arena_margin)) // 16) * 16


class McuTarget(Target):
    """A microcontroller profile: full-integer TFLite rows in TFLite Micro, with its budgets."""

    kind = "mcu"
    evaluates = True
    order = 3  # after this machine, the gpu and ssh devices: its latencies are host time
    offers = frozenset({TFLITE_MICRO})
    profile_model = McuProfile

    def __init__(self, profile: McuProfile, log: Callable[[str], None] | None = None):
        self.profile, self.name, self.log = profile, profile.name, log
        self._homes: set[str] = set()
        self._version: str | None = None

    def supports(self, variant) -> bool:
        from edgekit.formats import FORMATS

        if not self.runs_format(FORMATS.get(variant.format)):
            return False
        if in_a_build(variant):
            self._homes.add(str(variant.path.parent.resolve()))
        # "unknown (...)": a file given to `edgekit bench` whose precision edgekit cannot read: TFLM decides
        return variant.precision in PRECISIONS or variant.precision.startswith("unknown")

    def unsupported_reason(self, variant) -> str:
        return (f"target {self.name} runs full-integer TFLite models ({', '.join(PRECISIONS)}) in TFLite Micro; "
                f"{variant.format} {variant.precision} is not one: add int8 to quantize.precisions")

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        """Run the artifact in TFLM in a process of its own; write its C array into the build's artifacts/.
        Every mcu profile runs the same interpreter on this machine: a second profile takes the
        first one's run of the same file and inputs, with its own budgets."""
        key = _run_key(Path(variant.path), spec, samples, eval_inputs)
        if key not in _RUNS:
            if len(_RUNS) >= KEEP_RUNS:  # the oldest goes: a build's profiles measure its artifacts in turn
                del _RUNS[next(iter(_RUNS))]
            _RUNS[key] = self._run(variant, spec, samples, eval_inputs)
        elif self.log:
            self.log(f"[mcu] {variant.stem}@{self.name}: the TFLite Micro run of {Path(variant.path).name} made for "
                     "another mcu profile")
        result, outputs = _RUNS[key]
        if isinstance(result, Measurement):
            return result
        self._version = result.get("version")
        if "error" in result:
            return Measurement("failed", _refusal_reason(result))
        return self._measurement(variant, result, outputs)

    def _run(self, variant, spec, samples, eval_inputs) -> tuple:
        """(result.json of mcu_run, outputs or None), or (a failed or skipped Measurement, None)."""
        import importlib.util

        if importlib.util.find_spec("tflite_micro") is None:
            return Measurement("skipped", f"target {self.name} needs the TFLite Micro interpreter: "
                               "pip install 'keras-edgekit[mcu]' (the tflite-micro wheel)"), None
        if self.log:
            self.log(f"[mcu] {variant.stem}@{self.name}: TFLite Micro op check, arena search, test split, timing")
        with tempfile.TemporaryDirectory(prefix="edgekit-mcu-") as tmp:
            folder = Path(tmp)
            (folder / "job.json").write_text(json.dumps({
                "model": str(Path(variant.path).resolve()), "warmup": int(spec.warmup), "runs": int(spec.runs),
                "min_time_s": float(spec.min_time_s), "rounds": int(getattr(spec, "rounds", 1)), "seed": 0}))
            np.save(folder / "samples.npy", as_samples(samples))  # a field per input for several
            if eval_inputs is not None:
                np.save(folder / "eval.npy", as_samples(eval_inputs))
            try:
                done = subprocess.run([sys.executable, "-m", "edgekit.targets.mcu_run", str(folder)], check=False, capture_output=True,
                                      text=True, timeout=TIMEOUT_S, env=lifeline.child_env())
            except subprocess.TimeoutExpired:
                return Measurement("failed", f"TFLite Micro took over {TIMEOUT_S:.0f} s on {Path(variant.path).name}: "
                                   "time fewer runs (benchmark.runs) or a smaller test split"), None
            result_file = folder / "result.json"
            if not result_file.exists():
                return Measurement("failed", _crash_reason(done, Path(variant.path).name)), None
            result = json.loads(result_file.read_text())
            outputs = np.load(folder / "outputs.npy") if (folder / "outputs.npy").exists() else None
        return result, outputs

    def _measurement(self, variant, result: dict, outputs) -> Measurement:
        p, arena, flash = self.profile, result["arena_bytes"], result["flash_bytes"]
        needed = p.arena_needed(arena)
        fields = {
            "arena_bytes": arena,
            "flash_bytes": flash,
            "memory_limits": [
                {"budget": "RAM", "value": needed, "limit": p.ram_bytes,
                 "what": f"tensor arena {arena} B + {p.arena_margin:.0%} margin (arena_margin) vs ram_kb {p.ram_kb:g}"},
                {"budget": "flash", "value": flash, "limit": p.flash_bytes,
                 "what": f"model flatbuffer vs flash_kb {p.flash_kb:g} (TFLite Micro's own code not included)"},
            ],
            "ops": result["ops"],
            "latency_is": HOST_TIME,
            # The two figures an embedded engineer reads first, in the table itself.
            "notes": [f"arena {_kib(arena)} + {p.arena_margin:.0%} = {_kib(needed)} of {p.ram_kb:g} KiB RAM; "
                      f"flash {_kib(flash)} of {p.flash_kb:g} KiB (model only)", f"latency is {HOST_TIME}"],
        }
        if result.get("agreement"):
            fields["agreement"] = result["agreement"]
            if (same := result["agreement"].get("top1")) is not None:
                fields["notes"][0] += f"; top-1 as LiteRT int8 on {same:.1%} of the test split"
            if (top1 := result["agreement"].get("top1")) is not None and top1 < 1:
                fields["notes"].append(f"TFLite Micro's top-1 differs from LiteRT's on {1 - top1:.1%} of the test split")
        for limit in fields["memory_limits"]:
            if limit["value"] > limit["limit"]:
                fields["notes"].append(f"does not fit {self.name}: {limit['what']}: {limit['value']} B > {limit['limit']} B")
        if in_a_build(variant):
            row_id = f"{variant.stem}@{self.name}"
            arena_constant = f"{c_identifier(row_id)}_arena_bytes"
            fields["c_array"] = write_c_array(
                Path(variant.path), Path(variant.path).parent, row_id, self.name, result["ops"],
                [("arena_measured_bytes", arena, "The smallest tensor arena it allocated and ran in (TFLite Micro on a 64-bit host)."),
                 ("arena_bytes", needed, "With the device profile's arena_margin: declare the arena this size, e.g.\n"
                  f"  alignas(16) static uint8_t tensor_arena[{arena_constant}];")],
                "the TFLite model as a C array for TFLite Micro, its tensor arena and op resolver.")
        # threads and delegate replace the LiteRT session's (the variant's settings): TFLM has neither
        settings = {"interpreter": "TFLite Micro (host build, reference kernels)", "threads": 1,
                    "delegate": "none (TFLite Micro runs its own kernels)", "arena_bytes": arena,
                    "arena_reported_bytes": result.get("arena_reported_bytes"), "input": result.get("input"),
                    "device": self.name, "row_fields": fields}
        return Measurement("ok", latencies_ms=result["latencies_ms"], rounds_ms=result["rounds_ms"], outputs=outputs,
                           runtime=f"tflite_micro {result.get('version')}", settings=settings,
                           environment=self.environment())

    def check(self, say) -> list[str]:
        """Nothing to reach: its rows run in TFLite Micro here, so the check is that interpreter."""
        say(f"device {self.name}: {self.profile.describe()}  (profile {self.profile.path})")
        installed = _installed()
        say(f"  interpreter  tflite_micro {installed} on this machine (latency is host time)")
        return [f"tflite-micro {installed}"] if installed.startswith("not installed") else []

    def cache_identity(self) -> dict:
        # The C arrays live in the run directory, so a measurement (which writes them) is reused
        # only by a build into the same run directory; another --out measures again.
        from edgekit.cache import source_hash

        return {**self.profile.model_dump(mode="json"), "code": source_hash("edgekit.targets.mcu_run", "edgekit.targets.c_source"),
                "run_dirs": sorted(self._homes)}

    def environment(self) -> dict:
        return {"device": self.name, "kind": self.kind, "description": self.profile.describe(),
                "profile": str(self.profile.path), "interpreter": f"tflite_micro {self._version or _installed()}",
                "ram_kb": self.profile.ram_kb, "flash_kb": self.profile.flash_kb, "arena_margin": self.profile.arena_margin,
                "latency": HOST_TIME}


def _installed() -> str:
    """The tflite-micro wheel's version, where no row ran this time (all from the cache)."""
    from importlib import metadata

    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        return "not installed (pip install 'keras-edgekit[mcu]')"


#: this process's TFLM runs, {key: (result, outputs)} (see McuTarget.measure), the last KEEP_RUNS
_RUNS: dict[str, tuple] = {}
KEEP_RUNS = 32


def _run_key(path: Path, spec, samples, eval_inputs) -> str:
    """What a TFLM run depends on: the file's bytes, the timing loop, the inputs."""
    import hashlib

    digest = hashlib.sha256(path.read_bytes())
    digest.update(repr((str(path.resolve()), spec.warmup, spec.runs, spec.min_time_s, getattr(spec, "rounds", 1))).encode())
    for arrays in (samples, eval_inputs):
        digest.update(b"|" if arrays is None else np.ascontiguousarray(as_samples(arrays)).tobytes())
    return digest.hexdigest()


def _crash_reason(done: subprocess.CompletedProcess, name: str) -> str:
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    last = f": {shorten(lines[-1], 300)}" if lines else ""
    if done.returncode >= 0:  # the run's Python failed: its last words say why
        return f"the TFLite Micro run of {name} failed (exit status {done.returncode}){last}"
    return (f"TFLite Micro crashed on {name} (killed by signal {-done.returncode}){last}; it reads the model without "
            "checking it: a damaged file, or an op or shape TFLM cannot run (fix the input shape, replace unusual layers)")


def _refusal_reason(result: dict) -> str:
    """One line: what TFLM lacks for the model and what to change."""
    refused = result.get("refused") or {}
    missing, dynamic = refused.get("missing_ops") or [], refused.get("dynamic_ops") or []
    parts = []
    if missing:
        fixes = [f"{op}: {OP_FIXES.get('FLEX' if op.startswith('CUSTOM') else op, 'replace the layer that makes it')}"
                 for op in missing]
        parts.append(f"TFLite Micro has no kernel for {', '.join(missing)} (model ops: {', '.join(result.get('ops', []))}); "
                     f"fix: {'; '.join(fixes)}")
    if dynamic:
        parts.append(f"dynamic tensors in {', '.join(dynamic)}: give the model fixed input shapes (batch 1, no None "
                     "dimension) and no shape-dependent ops")
    if not parts:
        last = refused.get("last") or result.get("error", "")
        parts.append(f"TFLite Micro refused the model: {last}")
    return "; ".join(parts)


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"
