"""Where the numbers were measured: CPU, ISA flags, Python and package versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata

# ISA extensions that decide how fast int8 and fp32 kernels can be.

#: what every build uses whatever its formats; each format's own packages come from its row
#: in the format table (``Format.packages``)
CORE_PACKAGES = ("edgekit", "tensorflow", "tf-keras", "keras", "tensorflow-model-optimization", "numpy", "scikit-learn")


def package_names() -> tuple[str, ...]:
    """The distributions whose versions results.json records: the core ones, then every one
    the live format table names."""
    from edgekit import formats

    return tuple(dict.fromkeys((*CORE_PACKAGES, *formats.packages())))


def cpu_info() -> tuple[str, list[str]]:
    """CPU model name and its ISA flags: the device runner's reading, so that this machine and a
    device are described by the same code."""
    from edgekit.targets.runner import cpu_info as read_cpu_info

    return read_cpu_info()


#: the names results.json records that are not the distribution's own: edgekit is distributed as
#: keras-edgekit (the name ``edgekit`` on the package index belongs to an unrelated project)
DISTRIBUTIONS = {"edgekit": "keras-edgekit"}


def package_versions(names) -> dict[str, str]:
    """The installed version of each distribution of ``names`` (the missing ones left out);
    edgekit's own from its distribution ``keras-edgekit``, else from the source it runs."""
    packages = {}
    for name in names:
        try:
            packages[name] = metadata.version(DISTRIBUTIONS.get(name, name))
        except metadata.PackageNotFoundError:
            if name == "edgekit":  # run from a checkout that is not installed
                from edgekit import __version__

                packages[name] = __version__
            continue
    return packages


def collect() -> dict:
    """The environment block of results.json."""
    cpu, isa = cpu_info()
    packages = package_versions(package_names())
    return {
        "cpu": cpu,
        "isa": isa,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": packages,
    }


def git_commit(path) -> str | None:
    """The commit checked out where ``path`` (a recipe file) lives, when that is a git
    repository (the history's ``commit``); None outside one or without git."""
    import subprocess
    from pathlib import Path

    if path is None:
        return None
    folder = Path(path).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and len(sha) >= 40 else None
