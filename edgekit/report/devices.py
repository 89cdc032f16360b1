"""The report's table of what each timed row relied on: the device that measured it (a pool's
member), its CPU clock, governor and temperature around the rounds (``timing.clocks``), the
tries before it (``retries``) and the waits for the temperature. Shared by report.md and
report.html."""

from __future__ import annotations

from edgekit.errors import shorten

HEADER = ["row", "device", "clock MHz", "governor", "temperature C", "retries", "waits"]


def _range(values, fmt: str = "{:g}") -> str:
    low, high = values
    return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"


def clock_cell(clocks: dict | None) -> str:
    """The cores' frequencies over the rounds, lowest to highest, or why there are none."""
    if not clocks:
        return "-"
    per_core = clocks.get("freq_mhz") or {}
    if not per_core:
        return "not in /sys"
    low = min(v[0] for v in per_core.values())
    high = max(v[1] for v in per_core.values())
    moved = f" (moved {clocks['freq_change']:.0%})" if clocks.get("freq_change") else ""
    return _range((low, high)) + moved


def retries_cell(retries: list | None) -> str:
    if not retries:
        return "-"
    last = retries[-1]
    error = str(last.get("error") or "")
    return f"{len(retries)}: {last.get('device')}: {shorten(error, 80)}"


def waits_cell(clocks: dict | None) -> str:
    waits = (clocks or {}).get("waits") or []
    if not waits:
        return "-"
    late = sum(1 for w in waits if w.get("reached") is False)
    limit = waits[0].get("limit_c")
    return (f"{len(waits)} below {limit:g} C, {clocks.get('waited_s', 0.0):.1f} s"
            + (f", {late} timed out" if late else ""))


def table(results: dict) -> list[list[str]]:
    """``[HEADER, *rows]`` for every row that was timed on a device or has clocks, retries or
    waits; ``[]`` when none has."""
    out = []
    for row in results.get("rows", []):
        clocks = (row.get("timing") or {}).get("clocks")
        if not (row.get("device") or clocks or row.get("retries")):
            continue
        governors = ", ".join((clocks or {}).get("governors") or []) or "-"
        temps = (clocks or {}).get("temp_c")
        out.append([row["id"], row.get("device") or row.get("target") or "-", clock_cell(clocks), governors,
                    _range(temps) if temps else "-", retries_cell(row.get("retries")), waits_cell(clocks)])
    return [HEADER, *out] if out else []


def fleet_lines(results: dict) -> list[str]:
    """One line per pool whose fleet quarantined a device (results.json ``targets.<pool>.fleet``)."""
    lines = []
    for name, block in (results.get("targets") or {}).items():
        members = ((block or {}).get("fleet") or {}).get("members") or {}
        out = [f"{device} ({m.get('reason')})" for device, m in members.items() if m.get("status") == "quarantined"]
        jobs = ", ".join(f"{device} {m.get('jobs', 0)}" for device, m in members.items())
        if members:
            lines.append(f"pool {name}: jobs per device: {jobs}" + (f"; quarantined: {'; '.join(out)}" if out else ""))
    return lines
