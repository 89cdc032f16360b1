"""How the runtimes' ``explain`` functions word a profile: shares, times and lists of op types.

Host-side only (the runtimes import it inside ``explain``, which devices never call); standard
library only, like the rest of this package.
"""

from __future__ import annotations

#: an op type is named as a cause from this share of the row's time
NAMED_SHARE = 0.05


def blamed(entry):
    """The share of a profile entry a cause may name it for: the low end of its share over the
    profile's rounds (``share_low``; ``edgekit.bench.profiles.share_spread``) where there is one,
    else its share. An entry whose rounds put it at 0 (noise: 26% in one build, 0% in the next)
    is never named."""
    if entry is None:
        return 0.0
    value = entry.get("share_low", entry.get("share"))
    return value or 0.0


def pct(share):
    """``0.42`` as ``42%``; an unknown share says so."""
    return "an unknown share" if share is None else f"{share:.0%}"


def us(ms):
    """Milliseconds as ``3.85 us`` (below 1 ms) or ``1.2 ms``."""
    if ms is None:
        return "?"
    return f"{ms * 1e3:.3g} us" if ms < 1 else f"{ms:.3g} ms"


def names(types, limit=3):
    """The first ``limit`` names, ``and N more`` after them."""
    shown = ", ".join(types[:limit])
    return shown + (f" and {len(types) - limit} more" if len(types) > limit else "")


def slow_types(profile):
    """The not-accelerated entries of a profile summary's top_op_types, by share."""
    return [t for t in profile.get("top_op_types") or [] if not t.get("accelerated")]


def unaccelerated(profile, all_fast):
    """What a profile's not-accelerated nodes amount to, when nothing more specific was found:
    ``all_fast`` where there are none, their share where it is small, else how many and which."""
    slow = profile.get("not_accelerated") or {}
    if not slow.get("ops"):
        return all_fast
    if slow.get("share") is not None and blamed(slow) < NAMED_SHARE:
        return f"{pct(slow['share'])} of time outside optimized kernels"
    return f"{slow['ops']} node(s) not accelerated ({names(slow.get('types') or [])}): {pct(slow.get('share'))} of time"
