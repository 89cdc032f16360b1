"""What ``edgekit devices check`` says of an ssh device: it connects, lists the device's Python,
OS, CPU, runtimes and work folder, and returns the health check's problems
(``edgekit.targets.faults.health_problems``): the same rule a pool applies before each job."""

from __future__ import annotations

from collections.abc import Callable

from edgekit.errors import DeviceError
from edgekit.targets import faults


def check(name: str, profile, say: Callable[[str], None]) -> list[str]:
    """Probe one ssh device and ``say`` what it has; returns its problems (empty: ready)."""
    from edgekit.targets import ssh

    say(f"device {name}: {profile.describe()}  (profile {profile.path})")
    try:
        info = ssh.probe(profile)
    except DeviceError as exc:
        return [str(exc)]
    say(f"  connection   ok (host key verified against {profile.known_hosts})")
    say(f"  python       {info['python']} ({info['python_executable']}), numpy {info['numpy']}")
    say(f"  os           {info['os']} {info['machine']}, {info['cores']} cores")
    say(f"  cpu          {info['cpu']}")
    say(f"  isa          {', '.join(info['isa']) or 'none of the tracked flags'}")
    for runtime, module in ssh.runtime_names().items():
        state = info["runtimes"].get(module, {})
        listed = runtime in profile.runtimes
        mark = "listed" if listed else "not listed"
        if state.get("ok"):
            say(f"  runtime      {runtime:<15} {state.get('version') or '?':<12} ({mark} in the profile)")
        else:
            say(f"  runtime      {runtime:<15} {'missing':<12} ({mark} in the profile){': ' + state['error'] if listed else ''}")
    work = info.get("work_dir") or {}
    free = work.get("free_bytes")
    space = f", {free / faults.MB:.0f} MB free" if isinstance(free, (int, float)) else ""
    if work.get("exists") and work.get("writable"):
        say(f"  work_dir     {profile.work_dir} (writable{space})")
    elif not work.get("exists"):
        say(f"  work_dir     {profile.work_dir} (missing; created on the first run{space})")
    return faults.health_problems(profile, info)
