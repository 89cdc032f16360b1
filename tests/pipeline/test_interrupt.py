"""Ctrl-C: an interrupted build writes a valid results file with every planned row, which
`edgekit report` and `edgekit check` both read; the plan of rows matches a real build's rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgekit.cli import cli
from edgekit.pipeline.build import plan
from edgekit.recipe.schema import load_recipe
from edgekit.report import results as results_file
from edgekit.results.read import load_results
from tests.conftest import TINY_UNPROFILED

# A pruned model too: its rows are planned although the build never gets to compress.
INTERRUPTED_RECIPE = TINY_UNPROFILED.replace("name: tiny", "name: stopped") + """
compress:
  - prune: {sparsity: 0.5, epochs: 1}
export: {formats: [tflite, onnx]}
"""
FORMATS = [f"{fmt}-{p}" for fmt in ("tflite", "onnx") for p in ("fp32", "int8")]
PLANNED = ["keras-fp32@cpu", *(f"{v}@cpu" for v in FORMATS), *(f"pruned50-{v}@cpu" for v in FORMATS)]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A real `edgekit build` sent SIGINT twice, 0.1 s apart (Ctrl-C pressed twice), when its log
    shows the second conversion: the first variant may be converted and evaluated by then, the
    others are not. The second Ctrl-C lands while the partial results are being written (it
    used to cut them short: exit 1 "Aborted!" and no results.json, in 2 of 8 tries)."""
    import time

    folder = tmp_path_factory.mktemp("interrupt")
    recipe = folder / "stopped.yaml"
    recipe.write_text(INTERRUPTED_RECIPE)
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(folder / "cache"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "edgekit", "build", str(recipe), "--out", str(folder / "run")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if sum(s.startswith("[convert]") for s in seen) == 2:
            process.send_signal(signal.SIGINT)
            time.sleep(0.1)
            process.send_signal(signal.SIGINT)
            break
    output = "".join(seen) + process.communicate(timeout=120)[0]
    return process.returncode, output, folder / "run", recipe


@pytest.mark.slow
def test_ctrl_c_during_conversion_exits_130_in_one_line(interrupted):
    code, output, _, _ = interrupted
    assert "[convert]" in output, output
    assert code == 130, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "interrupted: partial results in" in errors[0], output
    assert "Traceback" not in output


@pytest.mark.slow
def test_partial_results_are_a_valid_results_file_with_every_planned_row(interrupted):
    _, output, run_dir, _ = interrupted
    results = load_results(run_dir / "results.json")  # raises on a file check and report would refuse
    assert results["interrupted"] is True and results["baseline"] == "keras-fp32@cpu"
    assert [row["id"] for row in results["rows"]] == PLANNED
    rows = {row["id"]: row for row in results["rows"]}
    # Nothing was benchmarked yet: every row is interrupted, none is ok, none is missing.
    assert {row["status"] for row in rows.values()} == {"interrupted"}, output
    # The baseline was evaluated before the signal: its row keeps its metric.
    assert rows["keras-fp32@cpu"]["metrics"]["accuracy"] > 0.85
    # A variant is either finished (artifact, runtime and metric) or not built at all, never half.
    for row in rows.values():
        if "before this row was benchmarked" in row["reason"]:
            assert row["size_bytes"] > 0 and row["runtime"] and row["metrics"]["accuracy"] > 0.8, row
        else:
            assert row["reason"] == "the build was interrupted before this variant was built", row
            assert row["size_bytes"] is None and row["metrics"] == {}, row
    for row_id in PLANNED[-4:]:  # compression never started
        assert rows[row_id]["reason"] == "the build was interrupted before this variant was built"
        assert rows[row_id]["metrics"] == {} and rows[row_id]["parent"] == "base"
    assert results["data"]["sha256"] and results["primary_metric"] == "accuracy"
    assert json.loads((run_dir / "latency.json").read_text())["rows"] == {}


@pytest.mark.slow
def test_report_reads_the_partial_results(interrupted):
    _, _, run_dir, _ = interrupted
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    page = (run_dir / "report.html").read_text()
    for row_id in PLANNED:
        assert f"data-row='{row_id}'" in page


@pytest.mark.slow
def test_check_fails_every_interrupted_row_with_its_reason(interrupted):
    _, _, run_dir, _ = interrupted
    result = CliRunner().invoke(cli, ["check", str(run_dir / "results.json")])
    assert result.exit_code == 1, result.output  # a partial run never passes the gate
    assert "missing key" not in result.output
    failed = [line for line in result.output.splitlines() if " interrupted " in line and " FAIL " in line]
    assert {line.split()[0] for line in failed} >= set(PLANNED), result.output
    assert "the build was interrupted" in result.output


def test_the_plan_is_the_rows_of_a_real_build(tiny_run):
    planned, not_produced = plan(load_recipe(tiny_run.recipe))
    assert [row.id for row in planned] == [row["id"] for row in tiny_run.results["rows"]]
    assert not_produced == tiny_run.results["not_produced"]


def test_partial_keeps_finished_rows_as_measured_and_marks_the_rest(tiny_run):
    results = tiny_run.results
    planned, _ = plan(load_recipe(tiny_run.recipe))
    head = {k: results[k] for k in ("edgekit_version", "recipe", "environment", "primary_metric")}
    finished = results["rows"][:3]
    partial = results_file.partial(head, planned, finished, [])
    assert [row["id"] for row in partial["rows"]] == [row["id"] for row in results["rows"]]
    assert partial["rows"][:3] == finished and partial["baseline"] == "keras-fp32@cpu"
    assert [row["status"] for row in partial["rows"][3:]] == ["interrupted"] * (len(results["rows"]) - 3)
    assert partial["latency_by_target"]["tflite-fp32"]["cpu"]["status"] == "ok"


def _signals_in_a_fresh_process(test: str) -> bool:
    """Run ``test`` in a pytest of its own and say so (True), unless this is that pytest.

    The tests below send SIGINT to their own process. In the suite's process, after hundreds of
    tests had loaded TensorFlow, JAX, onnxruntime, OpenVINO, Dask and TFLite Micro with their
    threads, that ended the whole run in a segmentation fault twice (never with the file alone);
    a fresh interpreter holds only what the test itself imports."""
    if os.environ.get("EDGEKIT_TEST_SIGNALS_HERE"):
        return False
    # SIGINT as a terminal leaves it: a pytest-xdist worker ignores it, and an ignored signal stays
    # ignored in a child, so Python would install no handler of its own there
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", f"{__file__}::{test}"],
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                          env={**os.environ, "EDGEKIT_TEST_SIGNALS_HERE": "1"}, capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0 and "\n1 passed" in "\n" + done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
    return True


def test_a_ctrl_c_inside_a_gc_callback_still_stops_the_build_silently(capsys):
    """JAX (which TensorFlow imports when it is installed) runs a callback after every garbage
    collection; a SIGINT landing there is "unraisable": Python hands it to sys.unraisablehook,
    which prints a traceback and drops it. During a build the hook sends it on instead."""
    if _signals_in_a_fresh_process("test_a_ctrl_c_inside_a_gc_callback_still_stops_the_build_silently"):
        return
    import time
    from types import SimpleNamespace

    from edgekit import interrupts

    with pytest.raises(KeyboardInterrupt), interrupts.watching():
        assert sys.unraisablehook is interrupts._unraisable
        for _ in range(2):  # a gc callback runs at the start and the end of a collection
            sys.unraisablehook(SimpleNamespace(exc_value=KeyboardInterrupt(), exc_type=KeyboardInterrupt,
                                               exc_traceback=None, err_msg=None, object=None))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the build goes on ... and is stopped here, once
            time.sleep(0.01)
    assert "Traceback" not in capsys.readouterr().err
    assert sys.unraisablehook is not interrupts._unraisable  # put back after the build


def test_a_second_ctrl_c_while_the_build_stops_raises_nothing():
    """The Ctrl-C that stops a build raises; one more within GRACE_S, or any while the partial
    results are written (``stopping``) or within GRACE_S after, even once the build has left
    ``watching`` with its error, is only noted; a later one raises again (a library may have
    swallowed the first) and, after the build, reaches the handler that was there before."""
    if _signals_in_a_fresh_process("test_a_second_ctrl_c_while_the_build_stops_raises_nothing"):
        return
    import time

    from edgekit import interrupts

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs at the next bytecode boundary

    with interrupts.watching():
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()
        ctrl_c()  # on its way out: nothing raised
        with interrupts.stopping():
            time.sleep(interrupts.GRACE_S)
            ctrl_c()  # while writing: nothing raised either
        ctrl_c()  # just after writing, as the build raises its one-line error: nothing raised
        time.sleep(interrupts.GRACE_S)
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()
        assert interrupts._seen
    with pytest.raises(KeyboardInterrupt):
        with interrupts.watching():
            ctrl_c()
    ctrl_c()  # the build has left watching with its error: noted, not "Aborted!"
    time.sleep(interrupts.GRACE_S)
    with pytest.raises(KeyboardInterrupt):  # later: Python's own handler again
        ctrl_c()
        time.sleep(0.5)  # the grace handler sends the signal again: it may land a moment later
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
