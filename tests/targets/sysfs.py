"""A folder laid out like Linux's /sys, for the clocks and temperature readings
(``edgekit.targets.clocks``): what a Raspberry Pi's kernel exposes, written by the test."""

from __future__ import annotations

from pathlib import Path


def fake_sysfs(root: Path, freq_khz: list[int], governor: str = "ondemand", temps_mc: list[int] = (45000,)) -> Path:
    """cpuN/cpufreq (scaling_cur_freq in kHz, scaling_governor) for each of ``freq_khz`` and a
    thermal_zoneN (temp in millidegrees, type) for each of ``temps_mc``."""
    for core, khz in enumerate(freq_khz):
        folder = root / "devices" / "system" / "cpu" / f"cpu{core}" / "cpufreq"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "scaling_cur_freq").write_text(f"{khz}\n")
        (folder / "scaling_governor").write_text(f"{governor}\n")
    for zone, millidegrees in enumerate(temps_mc):
        set_temperature(root, zone, millidegrees)
        (root / "class" / "thermal" / f"thermal_zone{zone}" / "type").write_text("cpu-thermal\n" if zone == 0 else f"zone{zone}\n")
    return root


def set_temperature(root: Path, zone: int, millidegrees: int) -> None:
    folder = root / "class" / "thermal" / f"thermal_zone{zone}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temp.new").write_text(f"{millidegrees}\n")
    (folder / "temp.new").replace(folder / "temp")  # never a half-written file for the reader


def set_frequency(root: Path, core: int, khz: int) -> None:
    path = root / "devices" / "system" / "cpu" / f"cpu{core}" / "cpufreq" / "scaling_cur_freq"
    path.with_suffix(".new").write_text(f"{khz}\n")
    path.with_suffix(".new").replace(path)
