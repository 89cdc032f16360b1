"""Progress output: plain lines for CI logs, a live bar on a terminal."""

from __future__ import annotations

import io

from edgekit.progress import BuildLog, step


def test_plain_mode_prints_every_message_as_a_line():
    stream = io.StringIO()
    log = BuildLog(stream, live=False)
    log("[train] lenet")
    log("  epoch 1/3: loss 0.5")
    step(log, "training", 1, 3)
    log.close()
    assert stream.getvalue().splitlines() == ["[train] lenet", "  epoch 1/3: loss 0.5"]


def test_live_mode_draws_a_bar_and_keeps_stage_lines():
    stream = io.StringIO()
    log = BuildLog(stream, live=True)
    log("[train] lenet")
    log("  epoch 2/4: loss 0.5")
    log.step("training", 2, 4)
    log._progress.refresh()
    log.close()
    out = stream.getvalue()
    assert "[train] lenet" in out
    assert "2/4" in out and "training" in out  # the bar's M/N column and description
    assert "\x1b[" in out  # terminal control codes: a live display, not plain lines


def test_plain_callables_are_left_alone():
    seen = []
    step(seen.append, "training", 1, 2)
    assert seen == []
