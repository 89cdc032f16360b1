"""Progress output: plain lines for CI logs, a live bar on a terminal."""

from __future__ import annotations

import io

from edgekit.progress import BuildLog, Counter, step


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
    log("  epoch 2/4: loss 0.5123, accuracy 0.8000")
    log.step("training base", 2, 4)
    log._progress.refresh()
    log.close()
    out = stream.getvalue()
    assert "[train] lenet" in out
    assert "epoch 2/4: loss 0.5123, accuracy 0.8000" in out  # a terminal shows every epoch, as a pipe does
    assert "2/4" in out and "training base" in out  # the bar's count and description
    assert "\x1b[" in out  # terminal control codes: a live display, not plain lines


def test_each_kind_of_work_counts_on_its_own_bar_and_a_finished_bar_goes():
    stream = io.StringIO()
    log = BuildLog(stream, live=True)
    log.step("training base", 10, 10)  # training done: its 10/10 must not follow the conversions
    log("[convert] tflite-int8")
    finished = Counter(log, "converting + evaluating", 3)
    finished.add()
    log.step("fine-tuning pruned80", 1, 4)
    bars = {task.description: task for task in log._progress.tasks}
    assert "training base" not in bars  # complete: gone
    assert bars["converting + evaluating"].fields["count"] == "1/3"
    assert bars["fine-tuning pruned80"].fields["count"] == "1/4"
    assert bars["[convert] tflite-int8"].fields["count"] == ""  # the latest message: no count of its own
    finished.add(2)
    assert "converting + evaluating" not in {task.description for task in log._progress.tasks}
    log.step("training base", 8, 10)
    log.end("training base")  # early stopping: the bar goes at 8/10
    assert "training base" not in {task.description for task in log._progress.tasks}
    log.close()


def test_plain_callables_are_left_alone():
    seen = []
    step(seen.append, "training", 1, 2)
    assert seen == []
