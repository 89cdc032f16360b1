"""CPU clocks and temperatures around the timed rounds, read from Linux's /sys.

Runs on the host (the cpu target) and on ssh devices (shipped with every job as
``edgekit/targets/clocks.py``, imported by the device runner): standard library only, Python 3.7.

Before and after each timed round (``edgekit.bench.timing.time_rounds``'s ``on_round``) a ``Recorder`` reads,
for every core this process may run on, the current frequency and governor
(``devices/system/cpu/cpuN/cpufreq/scaling_cur_freq``, ``scaling_governor``) and every thermal
zone's temperature (``class/thermal/thermal_zoneN/temp``, millidegrees). With ``wait_below_c``
it first waits, before each round, until the hottest zone is below that limit (polling every
``POLL_S``, at most ``wait_timeout_s``), and records the wait. A machine whose /sys exposes none
of it (a VM, a container) gives readings with nothing in them, said as such.

The root is ``/sys``, or ``$EDGEKIT_SYSFS_ROOT`` or a device profile's ``sysfs_root``: a folder
laid out like /sys, which is how the tests fake a hot board or a clock that moves.
"""

from __future__ import annotations

import glob
import os
import time

#: the variable that points the readings at another /sys (a fake tree in tests)
ROOT_ENV = "EDGEKIT_SYSFS_ROOT"
#: seconds between two temperature readings while waiting
POLL_S = 0.5
#: cores read at most (a 128-core server's full list would swamp every row)
MAX_CORES = 64


def sysfs_root(given=None):
    """``given``, else ``$EDGEKIT_SYSFS_ROOT``, else ``/sys``."""
    return given or os.environ.get(ROOT_ENV) or "/sys"


def cores_used():
    """The cores this process may run on (its affinity), at most MAX_CORES."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = list(range(os.cpu_count() or 1))
    return cores[:MAX_CORES]


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _number(text, scale):
    try:
        return round(float(text) / scale, 1)
    except (TypeError, ValueError):
        return None


def temperatures(root):
    """``{zone name: degrees C}`` of every thermal zone under ``root`` that reads (name: its
    ``type``, else thermal_zoneN; a repeated type gets the zone's number)."""
    out = {}
    for folder in sorted(glob.glob(os.path.join(root, "class", "thermal", "thermal_zone*")),
                         key=lambda path: int("0" + "".join(c for c in os.path.basename(path) if c.isdigit()))):
        value = _number(_read(os.path.join(folder, "temp")), 1000.0)
        if value is None:
            continue
        name = _read(os.path.join(folder, "type")) or os.path.basename(folder)
        out[name if name not in out else "{}#{}".format(name, os.path.basename(folder)[12:])] = value
    return out


def read(root, cores):
    """One reading: ``{"t", "freq_mhz": {core: MHz}, "governor": {core: name}, "temp_c": {zone: C}}``;
    what /sys does not expose is absent."""
    freq, governor = {}, {}
    for core in cores:
        folder = os.path.join(root, "devices", "system", "cpu", "cpu{}".format(core), "cpufreq")
        mhz = _number(_read(os.path.join(folder, "scaling_cur_freq")) or _read(os.path.join(folder, "cpuinfo_cur_freq")),
                      1000.0)
        if mhz is not None:
            freq[str(core)] = mhz
        name = _read(os.path.join(folder, "scaling_governor"))
        if name:
            governor[str(core)] = name
    return {"t": round(time.time(), 3), "freq_mhz": freq, "governor": governor, "temp_c": temperatures(root)}


def hottest(reading):
    """The highest zone temperature of a reading, or None without zones."""
    values = list((reading.get("temp_c") or {}).values())
    return max(values) if values else None


def wait_below(root, limit_c, timeout_s, poll_s=POLL_S):
    """Wait until the hottest zone is below ``limit_c`` (at most ``timeout_s``): what happened,
    ``{"limit_c", "waited_s", "start_c", "end_c", "reached"}``; ``reached`` None when no zone reads."""
    started = time.monotonic()
    first = now = hottest({"temp_c": temperatures(root)})
    while now is not None and now >= limit_c and time.monotonic() - started < timeout_s:
        time.sleep(min(poll_s, max(0.0, timeout_s - (time.monotonic() - started))))
        now = hottest({"temp_c": temperatures(root)})
    return {"limit_c": limit_c, "waited_s": round(time.monotonic() - started, 3), "start_c": first, "end_c": now,
            "reached": None if now is None else now < limit_c}


class Recorder(object):
    """Called as ``recorder(phase, round)`` by ``time_rounds`` before ("before") and after ("after")
    each timed round: waits for the temperature first where asked, then reads the clocks."""

    def __init__(self, root=None, wait_below_c=None, wait_timeout_s=300.0):
        self.root = sysfs_root(root)
        self.cores = cores_used()
        self.wait_below_c = wait_below_c
        self.wait_timeout_s = float(wait_timeout_s)
        self.readings = []
        self.waits = []

    def __call__(self, phase, round_index):
        if phase == "before" and self.wait_below_c is not None:
            wait = wait_below(self.root, float(self.wait_below_c), self.wait_timeout_s)
            wait["round"] = round_index
            self.waits.append(wait)
        reading = read(self.root, self.cores)
        reading.update(round=round_index, phase=phase)
        self.readings.append(reading)

    def summary(self):
        """What the rows of the rounds carry (``timing.clocks``): see ``summarize``."""
        return summarize(self.readings, self.waits, self.root, self.cores)


def summarize(readings, waits, root, cores):
    """The readings of one set of rounds: every reading; per core, the lowest and highest
    frequency seen; the governors; the lowest and highest hottest-zone temperature; the largest
    relative frequency change of a core (``freq_change``: (max - min) / max); and the waits."""
    per_core = {}
    for reading in readings:
        for core, mhz in (reading.get("freq_mhz") or {}).items():
            per_core.setdefault(core, []).append(mhz)
    governors = sorted({name for r in readings for name in (r.get("governor") or {}).values()})
    temps = [t for t in (hottest(r) for r in readings) if t is not None]
    change = max(((max(v) - min(v)) / max(v) for v in per_core.values() if max(v) > 0), default=None)
    return {
        "source": root,
        "cores": [int(c) for c in cores],
        "readings": readings,
        "freq_mhz": {core: [min(v), max(v)] for core, v in per_core.items()} or None,
        "freq_change": None if change is None else round(change, 4),
        "governors": governors or None,
        "temp_c": [min(temps), max(temps)] if temps else None,
        "waits": waits,
        "waited_s": round(sum(w.get("waited_s") or 0.0 for w in waits), 3),
    }
