"""Where the numbers were measured: CPU, ISA flags, Python and package versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# ISA extensions that decide how fast int8 and fp32 kernels can be.
_ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2",
)

#: what every build uses whatever its formats; each format's own packages come from its row
#: in the format table (``Format.packages``)
CORE_PACKAGES = ("edgekit", "tensorflow", "tf-keras", "keras", "tensorflow-model-optimization", "numpy", "scikit-learn")


def package_names() -> tuple[str, ...]:
    """The distributions whose versions results.json records: the core ones, then every one
    the live format table names."""
    from edgekit import formats

    return tuple(dict.fromkeys((*CORE_PACKAGES, *formats.packages())))


def cpu_info() -> tuple[str, list[str]]:
    """CPU model name and the ISA flags from _ISA_FLAGS it has (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags.update(value.split())
    return model, [f for f in _ISA_FLAGS if f in flags]


def collect() -> dict:
    """The environment block of results.json."""
    cpu, isa = cpu_info()
    packages = {}
    for name in package_names():
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": packages,
    }
