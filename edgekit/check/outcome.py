"""One budget's verdict on one row (``Outcome``): made by the check's gate and by the results
history's window (``edgekit.history.window``), printed by ``edgekit.check.output``. Its own
module so that the history does not import the gate that imports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    """One budget on one row: what was measured, the limit, and pass, fail, skip or unstable
    (a latency budget not judged because the row's rounds disagreed: the check does not pass
    on it unless ``CheckReport.allow_unjudged``).

    ``compared`` is true when ``value`` is a finite number judged against ``limit``; a failure
    is then "value > limit". Any other failure (a status, a NaN, a missing row) says why in ``detail``.
    """

    row: str
    budget: str
    value: str
    limit: str
    result: str
    detail: str = ""
    compared: bool = False
    #: how a compared value fails its limit: ">" (a ceiling) or "<" (a floor: min_metric)
    fails_if: str = ">"

    @property
    def holds_if(self) -> str:
        return "<=" if self.fails_if == ">" else ">="

    def describe(self) -> str:
        """The outcome in one phrase, for the summary line and JUnit messages."""
        if self.compared:
            return f"{self.row} {self.budget} {self.value} {self.fails_if} {self.limit}"
        return f"{self.row} {self.budget} {self.value}: {self.detail}"
