"""The ``ethos-u`` target kind: an Arm Ethos-U NPU (U55, U65, U85) beside a microcontroller,
described by devices/NAME.yaml with ``kind: ethos-u``. Its rows are the full-integer TFLite
artifacts compiled by Arm's Vela compiler (``pip install 'keras-edgekit[ethos-u]'``) on this machine, in a
process of its own (edgekit.targets.vela). Nothing runs on an NPU: Vela is the vendor's tool, and
what it says of the model is what the row holds:

- ``npu``: how many of the model's operators run on the NPU, and each one left to the CPU with
  Vela's reason and a fix where one is known (``npu.cpu_ops``);
- ``sram_bytes`` and ``flash_bytes``: Vela's SRAM use (the NPU's tensor arena, and in a
  Sram_Only memory mode its weights too) and the compiled model, against the profile's
  ``sram_kb`` and ``flash_kb`` in ``memory_limits``, which ``edgekit check`` judges as for mcu rows;
- ``npu_estimate``: Vela's cycle and time estimate, labelled as such; never a measured
  latency: the row's ``latency_ms`` stays empty, so no speedup is computed from it;
- ``compiled``: artifacts/<row id>.tflite, the model Vela wrote, and ``c_array``: the same as a
  C array with an op resolver (AddEthosU and the CPU operators), as mcu rows have;
- metrics: the int8 artifact's, evaluated on this machine: the compiled model is the same
  integer arithmetic (Vela changes where it runs, not what it computes); the row says so.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edgekit.errors import one_line
from edgekit.formats import VELA
from edgekit.targets.base import Measurement, Target
from edgekit.targets.profiles import ProfileBase, local_path

#: the accelerator configurations Vela 5 compiles for (``vela --help``)
ACCELERATORS = ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u65-512",
                "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024", "ethos-u85-2048")
#: per NPU family, the system configuration and memory mode Vela itself picks when given none
DEFAULTS = {"ethos-u55": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
            "ethos-u65": ("Ethos_U65_Client_Server", "Dedicated_Sram_384KB"),
            "ethos-u85": ("Ethos_U85_SYS_DRAM_Mid", "Dedicated_Sram_384KB")}
#: what every row's estimate carries
ESTIMATE = ("Vela's estimate from its performance model, not a measurement: no latency, no speedup; "
            "run the compiled model on the device, an FVP or an FPGA for one")
#: what every row says of its metrics
METRICS_ARE = ("the int8 artifact's, evaluated on this machine: the compiled model is the same integer arithmetic "
               "(Vela moves operators to the NPU, it does not change what they compute)")
NO_VELA = "pip install 'keras-edgekit[ethos-u]' (Arm's Vela compiler, the ethos-u-vela package)"


class EthosUProfile(ProfileBase):
    """devices/NAME.yaml of kind ethos-u: the NPU, its system and memory, and the budgets."""

    kind: Literal["ethos-u"] = Field(description="ethos-u: Arm's Vela compiler on this machine, with this NPU's budgets")
    accelerator: Literal[ACCELERATORS] = Field(description="the NPU and its MACs per cycle, as Vela names it")
    system_config: str | None = Field(None, description="Vela's system configuration (the clock and the buses to SRAM, "
                                      "flash, DRAM), a section of Vela's vela.ini or of config_file; default: Vela's "
                                      "own for the NPU family")
    memory_mode: str | None = Field(None, description="Vela's memory mode (which memory holds the tensor arena, the "
                                    "weights, the cache); default: Vela's own for the NPU family")
    config_file: Path | None = Field(None, description="a Vela .ini of your own with system_config and memory_mode "
                                     "(relative to the profile); default: Vela's Arm/vela.ini")
    clock_mhz: float | None = Field(None, gt=0, le=10000, description="the NPU clock, replacing the system "
                                    "configuration's core_clock")
    sram_kb: float = Field(gt=0, description="SRAM for the NPU's tensor arena, in kB (1024 bytes); Vela plans within it "
                           "(its --arena-cache-size)")
    flash_kb: float = Field(gt=0, description="flash for the compiled model, in kB (1024 bytes)")
    optimise: Literal["Performance", "Size"] = Field("Performance", description="Vela's --optimise")
    cpu: str | None = Field(None, description="the microcontroller beside the NPU, for the report (e.g. Cortex-M55)")

    @model_validator(mode="after")
    def _family_defaults(self):
        family = self.accelerator.rsplit("-", 1)[0]
        self.system_config = self.system_config or DEFAULTS[family][0]
        self.memory_mode = self.memory_mode or DEFAULTS[family][1]
        return self

    def resolve_paths(self, base: Path) -> None:
        """Make config_file absolute, then check that the system configuration and memory mode
        are in it (in Vela's own vela.ini without one; not checked where Vela is not installed).

        Raises:
            ValueError: one line naming the field, what the file holds and what was given.
        """
        from edgekit.targets import vela

        if self.config_file is not None:
            self.config_file = local_path(self.config_file, base)
            if not self.config_file.is_file():
                raise ValueError(f"config_file: no such file {self.config_file}; expected a Vela .ini file")
        ini = self.config_file or vela.config_file()
        if ini is None:
            return  # Vela is not installed: its rows say so
        try:
            found = vela.sections(ini)
        except Exception as exc:  # noqa: BLE001 - configparser's errors, a file that is no .ini
            raise ValueError(f"config_file: {ini} is not a Vela .ini file ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        for field, kind in (("system_config", "System_Config"), ("memory_mode", "Memory_Mode")):
            if getattr(self, field) not in found[kind]:
                raise ValueError(f"{field}: {getattr(self, field)!r} is not in {ini}; expected one of: "
                                 f"{', '.join(found[kind]) or 'none'}")

    def describe(self) -> str:
        clock = f" at {self.clock_mhz:g} MHz" if self.clock_mhz else ""
        where = f"{self.cpu} + " if self.cpu else ""
        return (f"{where}{self.accelerator}{clock} ({self.system_config}, {self.memory_mode}), {self.sram_kb:g} kB SRAM, "
                f"{self.flash_kb:g} kB flash (Vela on this host)")

    @property
    def sram_bytes(self) -> int:
        return int(self.sram_kb * 1024)

    @property
    def flash_bytes(self) -> int:
        return int(self.flash_kb * 1024)


class EthosUTarget(Target):
    """An Ethos-U profile: full-integer TFLite rows compiled by Vela, with its budgets and estimate."""

    kind = "ethos-u"
    order = 3  # after this machine, the gpu and ssh devices, with the microcontrollers
    measures_latency = False  # Vela estimates; nothing runs
    offers = frozenset({VELA})
    profile_model = EthosUProfile

    def __init__(self, profile: EthosUProfile, log: Callable[[str], None] | None = None):
        self.profile, self.name, self.log = profile, profile.name, log
        self._homes: set[str] = set()

    def supports(self, variant) -> bool:
        from edgekit.formats import FORMATS
        from edgekit.targets.c_source import in_a_build
        from edgekit.targets.mcu import PRECISIONS

        if not self.runs_format(FORMATS.get(variant.format)):
            return False
        if in_a_build(variant):
            self._homes.add(str(Path(variant.path).parent.resolve()))
        return variant.precision in (*PRECISIONS, "-")  # "-": a file given to `edgekit bench`: Vela decides

    def unsupported_reason(self, variant) -> str:
        from edgekit.targets.mcu import PRECISIONS

        return (f"target {self.name} compiles full-integer TFLite models ({', '.join(PRECISIONS)}) for the NPU with "
                f"Vela; {variant.format} {variant.precision} is not one: add int8 to quantize.precisions")

    def measure(self, variant, spec, samples, eval_inputs=None) -> Measurement:
        """Compile the artifact with Vela in a process of its own; in a build, write the compiled
        model and its C array into artifacts/. No timing: ``spec`` and ``samples`` are unused."""
        from edgekit.targets import vela

        if vela.version() is None:
            return Measurement("skipped", f"target {self.name} needs Vela: {NO_VELA}")
        source = Path(variant.path)
        if self.log:
            self.log(f"[ethos-u] {variant.stem}@{self.name}: Vela compiles {source.name} for {self.profile.accelerator}")
        p = self.profile
        with tempfile.TemporaryDirectory(prefix="edgekit-vela-") as tmp:
            folder = Path(tmp)
            configs = [str(p.config_file or vela.config_file())]
            system = p.system_config
            if p.clock_mhz:  # a section of our own: the chosen system at the profile's clock
                (folder / "clock.ini").write_text(f"[System_Config.edgekit_clock]\ninherit=System_Config.{system}\n"
                                                  f"core_clock={p.clock_mhz * 1e6:.0f}\n")
                configs.append(str(folder / "clock.ini"))
                system = "edgekit_clock"
            args = vela.command(folder / "model.tflite", folder / "out", p.accelerator, configs, system, p.memory_mode,
                                p.optimise, p.sram_bytes)
            try:
                result = vela.compile_model(source, folder, args)
            except Exception as exc:  # noqa: BLE001 - an unreadable model fails its row with the parser's words
                return Measurement("failed", f"Vela's output for {source.name} could not be read ({one_line(exc)})")
            if "error" in result:
                return Measurement("failed", result["error"])
            return self._measurement(variant, result)

    def _measurement(self, variant, result: dict) -> Measurement:
        from edgekit.targets import vela
        from edgekit.targets.c_source import in_a_build

        p = self.profile
        fields = row_fields(p, result)
        for limit in fields["memory_limits"]:
            if limit["value"] > limit["limit"]:
                fields["notes"].append(f"does not fit {self.name}: {limit['what']}: {limit['value']} B > {limit['limit']} B")
        if in_a_build(variant):
            fields.update(self._write_files(variant, result["compiled"], result["compiled_ops"], fields["sram_bytes"]))
        settings = {"compiler": f"vela {vela.version()}", "accelerator": p.accelerator, "system_config": p.system_config,
                    "memory_mode": p.memory_mode, "optimise": p.optimise, "arena_cache_size": p.sram_bytes,
                    "clock_mhz": fields["npu_estimate"]["clock_mhz"], "device": self.name, "row_fields": fields}
        return Measurement("ok", settings=settings, runtime=f"vela {vela.version()} (compiled, not run)",
                           environment=self.environment())

    def _write_files(self, variant, compiled: Path, ops: list[str], sram: int) -> dict:
        """artifacts/<row id>.tflite (Vela's model) and its C array; the row's ``compiled`` and ``c_array``."""
        from edgekit.targets.c_source import file_stem, write_c_array

        folder, row_id, p = Path(variant.path).parent, f"{variant.stem}@{self.name}", self.profile
        kept = folder / f"{file_stem(row_id)}.tflite"
        kept.write_bytes(compiled.read_bytes())
        c_array = write_c_array(
            kept, folder, row_id, self.name, ops,
            [("sram_bytes", sram, f"Vela's SRAM use ({p.memory_mode}): the NPU's part of the tensor arena; declare "
              "the arena at least this size plus what TFLite Micro and the CPU operators need.")],
            f"the model compiled by Vela for {p.accelerator} as a C array for TFLite Micro with the Ethos-U driver, "
            "and its op resolver.")
        return {"compiled": {"path": str(kept.relative_to(folder.parent)), "bytes": kept.stat().st_size}, "c_array": c_array}

    def check(self, say) -> list[str]:
        """Nothing to reach: its rows are compiled by Vela here, so the check is that compiler."""
        from edgekit.targets import vela

        say(f"device {self.name}: {self.profile.describe()}  (profile {self.profile.path})")
        installed = vela.version()
        say(f"  compiler     vela {installed or 'not installed'} on this machine, for {self.profile.accelerator}")
        return [] if installed else [f"Vela is not installed: {NO_VELA}"]

    def cache_identity(self) -> dict:
        # The compiled model and C arrays live in the run directory: a measurement is reused only
        # by a build into the same run directory; another --out compiles again (a second or two).
        from edgekit.cache import source_hash
        from edgekit.targets import vela

        ini = self.profile.config_file
        return {**self.profile.model_dump(mode="json"), "vela": vela.version(),
                "config_sha256": hashlib.sha256(ini.read_bytes()).hexdigest() if ini and ini.is_file() else None,
                "code": source_hash("edgekit.targets.vela", "edgekit.targets.c_source"), "run_dirs": sorted(self._homes)}

    def environment(self) -> dict:
        from edgekit.targets import vela

        p = self.profile
        return {"device": self.name, "kind": self.kind, "description": p.describe(), "profile": str(p.path),
                "compiler": f"vela {vela.version() or f'not installed ({NO_VELA})'}", "accelerator": p.accelerator,
                "system_config": p.system_config, "memory_mode": p.memory_mode, "clock_mhz": p.clock_mhz,
                "sram_kb": p.sram_kb, "flash_kb": p.flash_kb, "latency": ESTIMATE, "metrics": METRICS_ARE}


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB"


def row_fields(p: EthosUProfile, result: dict) -> dict:
    """What a row holds of Vela's compile (``vela.compile_model``'s result) for profile ``p``:
    the operators' placement, SRAM and flash against the budgets, the estimate, the notes."""
    from edgekit.targets.c_source import op_resolver

    s, ops = result["summary"], result["ops"]
    flash = result["compiled"].stat().st_size
    sram = round(float(s.get("sram_memory_used", 0.0)) * 1024)  # Vela reports KiB
    cpu = [op for op in ops if op["on"] == "cpu"]
    share = (len(ops) - len(cpu)) / len(ops) if ops else 0.0
    estimate = {"cycles": int(s.get("cycles_total", 0)), "npu_cycles": int(s.get("cycles_npu", 0)),
                "ms": round(float(s.get("inference_time", 0.0)) * 1e3, 6), "clock_mhz": float(s.get("core_clock", 0)) / 1e6,
                "macs": int(s.get("nn_macs", 0)), "is": ESTIMATE}
    notes = [f"NPU: {len(ops) - len(cpu)} of {len(ops)} operators ({share:.0%}) on {p.accelerator}"
             + (f"; on the CPU: {', '.join(op['op'] for op in cpu)}" if cpu else "")
             + f"; SRAM {_kib(sram)} of {p.sram_kb:g} KiB; flash {_kib(flash)} of {p.flash_kb:g} KiB",
             f"Vela's estimate, not measured: {estimate['ms']:.3g} ms ({estimate['cycles']:,} cycles at "
             f"{estimate['clock_mhz']:g} MHz)", "metrics: the int8 artifact's (same integer arithmetic)"]
    notes += [f"{op['op']} ({op['output']}) stays on the CPU: {op['reason']}" + (f"; fix: {op['fix']}" if op["fix"] else "")
              for op in cpu]
    if missing := op_resolver(result["compiled_ops"])["unknown"]:
        notes.append(f"TFLite Micro has no kernel for {', '.join(missing)}: the CPU's part of the compiled model does not "
                     "run in TFLite Micro as it is (replace those layers, see the fixes)")
    return {
        "npu": {"accelerator": p.accelerator, "operators": len(ops), "on_npu": len(ops) - len(cpu), "share": round(share, 4),
                "cpu_ops": [{k: op[k] for k in ("op", "output", "reason", "fix")} for op in cpu],
                "vela_counts": result.get("vela_counts"),
                # Vela's lossless weight encoding: a pruned model's zeros cost little flash
                "weights_bytes": {"original": int(s.get("total_original_weights", 0)),
                                  "encoded": int(s.get("total_npu_encoded_weights", 0))}},
        "sram_bytes": sram,
        "flash_bytes": flash,
        "memory_used": {area: round(float(s.get(f"{area}_memory_used", 0.0)) * 1024)
                        for area in ("sram", "dram", "on_chip_flash", "off_chip_flash")},
        "memory_limits": [
            {"budget": "SRAM", "value": sram, "limit": p.sram_bytes,
             "what": f"Vela's SRAM use ({p.memory_mode}) vs sram_kb {p.sram_kb:g}"},
            {"budget": "flash", "value": flash, "limit": p.flash_bytes,
             "what": f"compiled model vs flash_kb {p.flash_kb:g} (the CPU's code not included)"},
        ],
        "npu_estimate": estimate,
        "metrics_are": METRICS_ARE,
        "notes": notes,
    }
