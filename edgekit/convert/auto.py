"""Automatic extra precisions (a format's ``auto_precisions``: OpenVINO bf16) only where this
CPU runs them fast.

An ISA flag says a precision runs natively, not that it runs fast: on AVX-512 BF16 without AMX
OpenVINO's bf16 rows ran 0.45-0.83x of f32 (``vdpbf16ps`` at half the FMA rate), and a row
that only loses time is noise in the table. So before a format's automatic precision is added,
its runtime's ``precision_probe`` (a format row's ``auto_probe``) times a short network at f32
and at that precision (about a second, once per machine: the answer is a ``probes`` entry of
the stage cache, keyed by the CPU, its flags and the runtime's version). The row is
added where the precision is at least as fast as f32 (``MIN_RATIO``); either way the decision
and its numbers are kept for results.json ``auto_precisions`` and the row's note.
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from pathlib import Path

#: an automatic precision is added where its probe runs at least this fast relative to f32
MIN_RATIO = 1.0


def decide(fmt, precision: str) -> dict:
    """Whether to add ``fmt``'s automatic ``precision`` on this machine, and why:
    ``{"format", "precision", "added", "why", "probe"}``. The probe runs one thread: it
    measures the CPU's units for the precision, which the build's threads do not change."""
    return dict(_decide(fmt.name, precision))


@lru_cache(maxsize=None)
def _decide(format_name: str, precision: str, threads: int = 1) -> tuple:
    from edgekit.formats import FORMATS, host_isa

    fmt = FORMATS[format_name]
    record = {"format": format_name, "precision": precision}
    native = [flag for flag in dict(fmt.native_isa).get(precision, ()) if flag in host_isa()]
    probe_name = dict(fmt.auto_probe).get(precision)
    if not probe_name:
        return tuple({**record, "added": True, "why": f"{precision} runs natively here ({', '.join(native) or 'no flag needed'})",
                      "probe": None}.items())
    try:
        probe = _cached_probe(fmt, precision, probe_name, threads)
    except Exception as exc:  # noqa: BLE001 - no probe, no automatic row: the recipe can still list it
        from edgekit.errors import one_line

        return tuple({**record, "added": False, "probe": None,
                      "why": f"not added: the {precision} speed probe failed ({one_line(exc)})"}.items())
    ratio = probe["ratio"]
    amx = "amx_bf16" in host_isa() if precision == "bf16" else None
    where = f" (kernel {probe['kernel']})" if probe.get("kernel") else ""
    flags = f"; CPU flags: {', '.join(native)}" + ("" if amx is None else ", AMX" if amx else ", no AMX")
    if ratio >= MIN_RATIO:
        why = f"added: {precision} ran {ratio:.2f}x as fast as f32 in a matmul probe{where}{flags}"
    else:
        why = (f"not added: {precision} ran {ratio:.2f}x of f32's speed in a matmul probe{where}{flags}; list it in "
               "quantize.precisions to build it anyway")
    return tuple({**record, "added": ratio >= MIN_RATIO, "why": why, "probe": probe}.items())


def _cached_probe(fmt, precision: str, probe_name: str, threads: int) -> dict:
    """The probe's result, from the stage cache's ``probes`` entries when this machine measured
    it before (keyed by the CPU, its flags, the format's package versions and the probe's code)."""
    from edgekit.cache import Cache, make_key, source_hash
    from edgekit.environment import package_versions
    from edgekit.targets.runner import cpu_info

    module, _, function = probe_name.partition(":")
    cpu, flags = cpu_info()
    key = make_key("probe", format=fmt.name, precision=precision, threads=threads, cpu=cpu, isa=flags,
                   versions=package_versions(fmt.packages), code=source_hash(module))

    def load(folder: Path) -> dict:
        value = json.loads((folder / "probe.json").read_text())
        if not isinstance(value, dict) or not isinstance(value.get("ratio"), (int, float)):
            raise ValueError("probe.json holds no probe result")
        return value

    value, _ = Cache().fetch("probes", key, f"{fmt.name} {precision} speed probe", load=load,
                             compute=lambda: getattr(importlib.import_module(module), function)(precision, threads),
                             store=lambda result, folder: (folder / "probe.json").write_text(json.dumps(result)))
    return value


def annotate(rows: list[dict], decisions: list[dict]) -> None:
    """Append each automatic row's decision to its note (the base model's rows of that format
    and precision)."""
    added = {(d["format"], d["precision"]): d["why"] for d in decisions if d.get("added")}
    for row in rows:
        why = added.get((row.get("format"), row.get("precision")))
        if why and row.get("model") == "base":
            row.setdefault("notes", []).append(f"{row['precision']} row {why}")
