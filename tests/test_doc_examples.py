"""Every example command of the README and the docs, run as written.

test_docs.py finds them (``_examples``: each ``edgekit ...`` of a shell block) and parses them;
here each page's commands run in the page's order (a later one uses what an earlier one made),
in a fresh folder per page that holds copies of the repository's recipes/ and devices/, through
the real CLI in this process (click's CliRunner: the command's own code, exit code and output; a
new process per command would import TensorFlow each time, about 4 s). One stage cache serves
every page (a copy of the shared tiny build's), so the digits CNN of the Quick start trains
once, on the README's page, and the tiny recipes below come from the tiny build. Each command's outcome
(``OUTCOMES``) asserts its exit code and what it must write or say; a new example without one fails.

The reader's own files stand in as small real files of the right kind (``READERS_FILES``): the
shared tiny CNN saved as ``my.keras`` with the digits as ``my.npz``; its TFLite and ONNX
conversions as ``model.tflite``, ``model-int8.tflite`` and ``model.onnx``, and as the four MLPerf
Tiny reference files the reader downloads; two copies of the shared tiny build as ``runs/main/``
and ``runs/branch/``; two tiny recipes as ``a.yaml`` and ``b.yaml``, which are also the scale-out
page's ``recipes/`` folder (the 26 bundled recipes would take tens of minutes); the Quick start's
``runs/digits_cnn`` where a page verifies it; ``devices/pi.yaml`` copied from
``devices/example-pi.yaml`` and an ssh key, as the targets page says to set up.

Where a command's world cannot exist here (no Dask scheduler called ``scheduler``, no Raspberry
Pi on the network, no ``/shared``), it still runs as written and the test asserts what a reader
sees there: one line naming the problem, a non-zero exit, no traceback.

One input is smaller than the docs': the search runs on a copy of ``recipes/digits_search.yaml``
(named the same) whose space holds 2 of its 18 trials (``SEARCH_SPACE``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli import cli
from tests.conftest import TINY_RECIPE
from tests.test_docs import ROOT, _examples


def _by_page() -> dict[str, list[str]]:
    pages: dict[str, list[str]] = {}
    for where, command in _examples():
        pages.setdefault(where.split(":")[0], []).append(command)
    return pages


PAGES = _by_page()


# --------------------------------------------------------------------------- the reader's files


def _sandbox(folder: Path) -> Path:
    shutil.copytree(ROOT / "recipes", folder / "recipes")
    shutil.copytree(ROOT / "devices", folder / "devices")
    return folder


def _tiny_recipe(name: str) -> str:
    return f"name: {name}\n" + TINY_RECIPE.replace("name: tiny\n", "")


def _my_model_and_data(folder: Path, request) -> None:
    """``my.keras`` and ``my.npz``: the shared tiny CNN (tf_keras) and the digits it learned."""
    import numpy as np

    x, y = request.getfixturevalue("digits")
    request.getfixturevalue("tiny_model").save(folder / "my.keras")
    np.savez(folder / "my.npz", x=x, y=y)


def _bench_files(folder: Path, request) -> None:
    """``model.tflite``, ``model-int8.tflite``, ``model.onnx``: the tiny CNN converted; ``devices/pi.yaml``
    copied from the example profile, as the page's Device profiles section says to."""
    artifacts = request.getfixturevalue("tiny_artifacts")
    shutil.copy(artifacts["tflite", "fp32"], folder / "model.tflite")
    shutil.copy(artifacts["tflite", "int8"], folder / "model-int8.tflite")
    shutil.copy(artifacts["onnx", "fp32"], folder / "model.onnx")
    shutil.copy(folder / "devices" / "example-pi.yaml", folder / "devices" / "pi.yaml")
    ssh = folder / "home" / ".ssh"  # the key the profile names: HOME is this folder while the page runs
    ssh.mkdir(parents=True)
    (ssh / "known_hosts").touch()
    if shutil.which("ssh-keygen"):  # without OpenSSH the rows say so instead
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / "id_ed25519")],
                       check=True, capture_output=True, timeout=30)


MLPERF_TINY = ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite", "vww_96_int8.tflite")


def _mlperf_files(folder: Path, request) -> None:
    """MLPerf Tiny's four reference int8 files (downloaded by the reader): the tiny CNN's int8 TFLite."""
    artifacts = request.getfixturevalue("tiny_artifacts")
    for name in MLPERF_TINY:
        shutil.copy(artifacts["tflite", "int8"], folder / name)


def _edit_recipe(path: Path, change: Callable[[dict], None]) -> None:
    """A copy of a bundled recipe, named the same, with ``change`` made to it (the comments go)."""
    recipe = yaml.safe_load(path.read_text())
    change(recipe)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))


def _two_runs(folder: Path, request) -> None:
    """``runs/main/`` and ``runs/branch/``: two copies of the shared tiny build."""
    tiny_run = request.getfixturevalue("tiny_run")
    for name in ("main", "branch"):
        shutil.copytree(tiny_run.dir, folder / "runs" / name)


def _two_recipes(folder: Path, request) -> None:
    """``a.yaml`` and ``b.yaml``, two tiny recipes; the page's ``recipes/`` folder holds the same two."""
    shutil.rmtree(folder / "recipes")
    (folder / "recipes").mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.yaml").write_text(_tiny_recipe(name))
        (folder / "recipes" / f"{name}.yaml").write_text(_tiny_recipe(name))


def _quick_start_run(folder: Path, request) -> None:
    """``runs/digits_cnn``: what the Quick start built."""
    shutil.copytree(request.getfixturevalue("quick_start"), folder / "runs" / "digits_cnn")


#: the search space of the copy of recipes/digits_search.yaml: 18 trials as shipped (52 s here,
#: most of it fine-tuning pruned models), 2 here: the unpruned model in TFLite, fp32 and int8
SEARCH_SPACE = {"prune": ["none"], "format": ["tflite"], "precision": ["fp32", "int8"]}


def _small_search(folder: Path, request) -> None:
    _edit_recipe(folder / "recipes" / "digits_search.yaml", lambda recipe: recipe["search"].update(space=SEARCH_SPACE))


READERS_FILES: dict[str, Callable] = {
    "docs/getting-started.md": _my_model_and_data,
    "docs/measurement.md": _quick_start_run,
    "docs/microcontrollers.md": _mlperf_files,
    "docs/results.md": _two_runs,
    "docs/scale-out.md": _two_recipes,
    "docs/search.md": _small_search,
    "docs/targets.md": _bench_files,
}


# --------------------------------------------------------------------------- what each command must do


def _rows(path: Path) -> dict[str, dict]:
    return {row["id"]: row for row in json.loads(path.read_text())["rows"]}


def _built(run: str) -> Callable:
    """Exit 0, every row of ``run``'s results.json ok, and the line that points at it."""
    def check(result, here: Path) -> None:
        assert result.exit_code == 0, result.output
        rows = _rows(here / run / "results.json")
        assert rows and all(row["status"] == "ok" for row in rows.values()), rows
        assert f"results: {run}/results.json" in result.output
    return check


def _quick_start(result, here: Path) -> None:
    _built("runs/digits_cnn")(result, here)
    rows = _rows(here / "runs/digits_cnn/results.json")
    assert {"keras-fp32@cpu", "tflite-int8@cpu", "onnx-int8@cpu", "openvino-int8@cpu"} <= set(rows)


def _my_build(result, here: Path) -> None:
    """The starter recipe of the reader's model: fp32 and int8 in TFLite, ONNX and OpenVINO."""
    _built("runs/my")(result, here)
    assert {"tflite-int8@cpu", "onnx-int8@cpu", "openvino-int8@cpu"} <= set(_rows(here / "runs/my/results.json"))


def _recorded(result, here: Path) -> None:
    _quick_start(result, here)
    assert (here / "ci.db").is_file() and "row(s) recorded in ci.db" in result.output, result.output


#: whether this machine has a /shared/runs before the tests (the scale-out page's cluster folder)
SHARED_RUNS = Path("/shared/runs")
SHARED_BEFORE = SHARED_RUNS.exists()


def _unreachable(result, here: Path) -> None:
    """No scheduler called ``scheduler`` here: one line naming it and why, exit 2, before any run
    directory is made (not even under /shared/runs, which a root user could create)."""
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith(
        "Error: --executor dask://scheduler:8786: no Dask scheduler answered ("), result.output
    assert SHARED_RUNS.exists() == SHARED_BEFORE


def _expect(*said: str) -> Callable:
    """Exit 0, and each of ``said`` in the output."""
    def check(result, here: Path) -> None:
        assert result.exit_code == 0 and all(text in result.output for text in said), result.output
    return check


def _file(path: str, said: str) -> Callable:
    """Exit 0, ``path`` written, and ``said`` in the output."""
    def check(result, here: Path) -> None:
        assert result.exit_code == 0 and said in result.output, result.output
        assert (here / path).is_file(), result.output
    return check


def _check_gate(result, here: Path) -> None:
    """Against a baseline saved from the same run every budget holds: exit 0; on a busy machine a
    row timed unstably leaves its latency budget unjudged, which does not pass: exit 1, said so."""
    assert (here / "junit.xml").is_file()
    last = result.output.strip().splitlines()[-1]
    assert "failed" not in last, result.output
    assert (result.exit_code, last.split(":")[0]) in ((0, "check passed"), (1, "Error")), result.output
    if result.exit_code:
        assert "latency budget(s) not judged, their timing unstable" in last, result.output


def _verify(result, here: Path) -> None:
    """Each TFLite and OpenVINO row timed against its runtime's own tool (whether they agree is the
    machine's answer: exit 1 when one is outside the tolerance); Keras and ONNX rows have none."""
    doc = json.loads((here / "runs/digits_cnn/verify.json").read_text())
    verdicts = {row["id"]: row["verdict"] for row in doc["rows"]}
    assert verdicts == {**{row: "unchecked" for row in ("keras-fp32@cpu", "onnx-fp32@cpu", "onnx-int8@cpu")},
                        **{row: verdicts[row] for row in verdicts if row.split("-")[0] in ("tflite", "openvino")}}, verdicts
    timed = [v for row, v in verdicts.items() if row.split("-")[0] in ("tflite", "openvino")]
    assert len(timed) >= 4 and set(timed) <= {"ok", "outside", "unsure"}, verdicts
    assert result.exit_code == ("outside" in timed), result.output


def _mcu_build(result, here: Path) -> None:
    _built("runs/tiny_kws_dscnn")(result, here)
    rows = _rows(here / "runs/tiny_kws_dscnn/results.json")
    for target in ("cortex-m4-256k", "cortex-m7-512k", "ethos-u55-128"):
        assert rows[f"tflite-int8@{target}"]["status"] == "ok", rows[f"tflite-int8@{target}"]


def _mlperf_bench(result, here: Path) -> None:
    """Each file in TFLite Micro (its arena) and compiled by Vela (its NPU operators): 8 ok rows."""
    assert result.exit_code == 0, result.output
    for name in MLPERF_TINY:
        for target, figure in (("cortex-m4-256k", "arena"), ("ethos-u55-128", "NPU: ")):
            assert re.search(rf"\n\s*{re.escape(name)}@{target}\s.*\sok \[\d+\]", result.output), result.output
            assert re.search(rf"\n\[\d+\] {re.escape(name)}@{target}: .*{figure}", result.output), result.output


def _compare(result, here: Path) -> None:
    """Two copies of one run: every row compared, none changed, every budget holds."""
    rows = _rows(here / "runs/main/results.json")
    assert result.exit_code == 0, result.output
    assert f"{len(rows)} row(s) compared, 0 changed; every --fail-on budget holds (metric, p50, status)" in result.output


def _many(said: str = "") -> Callable:
    """Both tiny recipes built, each into runs/<name>/, and summed up in runs/summary.json."""
    def check(result, here: Path) -> None:
        assert result.exit_code == 0, result.output
        summary = json.loads((here / "runs/summary.json").read_text())
        assert [(r["name"], r["status"]) for r in summary["recipes"]] == [("a", "ok"), ("b", "ok")], summary
        assert all((here / "runs" / name / "results.json").is_file() for name in "ab")
        assert said in result.output, result.output
    return check


def _search(said: str = "") -> Callable:
    """Both trials built and timed, a pick among them (the second run reuses every trial)."""
    def check(result, here: Path) -> None:
        assert result.exit_code == 0, result.output
        search = json.loads((here / "runs/digits_search-search/results.json").read_text())["search"]
        assert [t["status"] for t in search["trials"]] == ["ok", "ok"], search["trials"]
        assert search["pick"] and "[search] pick: tflite-" in result.output and said in result.output, result.output
    return check


def _bench_with_pi(result, here: Path) -> None:
    """No Raspberry Pi answers here: the cpu rows are timed, each pi row fails in one line naming
    the device (its key missing, or its host unreachable, whichever comes first), exit 1."""
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    for name in ("model.tflite", "model-int8.tflite", "model.onnx"):
        assert any(re.match(rf"\s*{re.escape(name)}@cpu\s.*\sok(\s|$)", line) for line in lines), result.output
    for name in ("model.tflite", "model-int8.tflite"):
        reason = next(line for line in lines if re.match(rf"\[\d+\] {re.escape(name)}@pi: ", line))
        assert reason.split(": ", 1)[1].startswith("failed: device pi: "), reason
        if shutil.which("ssh"):
            assert reason.endswith(": failed: device pi: device unreachable: cannot resolve host (pi@raspberrypi.local:22): "
                                   "ssh: Could not resolve hostname raspberrypi.local: Name or service not known"), reason
    assert any("model.onnx@pi: skipped: device pi has no runtime for onnx" in line for line in lines), result.output


def _normal(command: str) -> str:
    return " ".join(shlex.split(command))


OUTCOMES: dict[str, Callable] = {_normal(command): check for command, check in {
    "edgekit build recipes/digits_cnn.yaml": _quick_start,
    "edgekit build recipes/digits_cnn.yaml --out runs/digits_cnn": _quick_start,
    "edgekit baseline save runs/digits_cnn baselines/digits_cnn.json": _file("baselines/digits_cnn.json",
                                                                             said="(8 rows of recipe digits_cnn"),
    "edgekit check runs/digits_cnn --baseline baselines/digits_cnn.json --junit junit.xml": _check_gate,
    "edgekit build recipes/digits_cnn.yaml --history ci.db": _recorded,
    "edgekit history digits_cnn --history ci.db": _file("digits_cnn.history.png", said="tflite-int8@cpu  "),
    "edgekit history tflite-int8@cpu --history ci.db": _file("tflite-int8@cpu.history.png", said="1 run(s)"),
    # one run in the history: the window has nothing to judge yet, and says so
    "edgekit check runs/digits_cnn --history ci.db --window 10": _expect("the window needs 3", "check passed"),
    "edgekit init --model my.keras --data my.npz --out my.yaml": _expect("recipe: my.yaml (validated)"),
    "edgekit validate my.yaml": _expect("my.yaml: ok: classification"),
    "edgekit build my.yaml": _my_build,
    "edgekit verify runs/digits_cnn": _verify,
    "edgekit build recipes/tiny_kws_dscnn.yaml": _mcu_build,
    "edgekit bench kws_ref_model.tflite pretrainedResnet_quant.tflite ad01_int8.tflite vww_96_int8.tflite "
    "--target cortex-m4-256k --target ethos-u55-128 --devices devices": _mlperf_bench,
    "edgekit compare runs/main/ runs/branch/ --fail-on metric=0.01 --fail-on p50=1.10 --fail-on status": _compare,
    "edgekit build recipes/ --out runs/": _many(),
    "edgekit build a.yaml b.yaml --executor dask://local": _many(said="[dask] scheduler tcp://127.0.0.1:"),
    "edgekit build recipes/ --executor dask://scheduler:8786": _unreachable,
    "edgekit build recipes/ --out /shared/runs --executor dask://scheduler:8786": _unreachable,
    "edgekit search recipes/digits_search.yaml": _search(),
    "edgekit search recipes/digits_search.yaml --executor dask://local": _search(said="[dask] scheduler tcp://127.0.0.1:"),
    "edgekit bench model.tflite model-int8.tflite model.onnx --target cpu --target pi --runs 300": _bench_with_pi,
}.items()}


def test_every_example_command_has_its_outcome_here():
    """A new example in the docs needs its outcome here; an outcome whose example is gone goes."""
    assert {_normal(c) for _, c in _examples()} == set(OUTCOMES)


# --------------------------------------------------------------------------- running them


@pytest.fixture(scope="module")
def stage_cache(tiny_run, tmp_path_factory):
    """One stage cache for every page: a copy of the shared tiny build's (the tiny recipes come
    from it; the tests that copy the original keep it small)."""
    return Path(shutil.copytree(tiny_run.dir.parent / "cache", tmp_path_factory.mktemp("doc-examples") / "cache"))


def _run(command: str, cache: Path, home: Path | None = None):
    """``command`` through the CLI in the current folder; ``home``: HOME for it (where ~ is)."""
    env = {"EDGEKIT_CACHE_DIR": str(cache), **({"HOME": str(home)} if home else {})}
    result = CliRunner(env=env).invoke(cli, shlex.split(command)[1:])
    assert result.exception is None or isinstance(result.exception, SystemExit), (command, result.output, result.exc_info)
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def quick_start(stage_cache, tmp_path_factory):
    """The Quick start, run once for the pages that use its run: ``runs/digits_cnn``."""
    here = _sandbox(tmp_path_factory.mktemp("quick-start"))
    cwd = Path.cwd()
    os.chdir(here)
    try:
        result = _run("edgekit build recipes/digits_cnn.yaml", stage_cache)
    finally:
        os.chdir(cwd)
    _quick_start(result, here)
    return here / "runs" / "digits_cnn"


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_pages_examples_run_as_written(page, stage_cache, tmp_path, monkeypatch, request):
    here = _sandbox(tmp_path)
    if page in READERS_FILES:
        READERS_FILES[page](here, request)
    monkeypatch.chdir(here)
    home = here / "home" if (here / "home").is_dir() else None
    for command in PAGES[page]:
        result = _run(command, stage_cache, home)
        OUTCOMES[_normal(command)](result, here)


@pytest.mark.slow
def test_the_python_api_example_runs_as_written(quick_start, stage_cache, tmp_path, monkeypatch, capsys):
    """The API page's block, in a fresh folder with the recipes: its build comes from the cache."""
    from tests.test_docs import _python_api_block

    monkeypatch.chdir(_sandbox(tmp_path))
    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(stage_cache))
    exec(compile(_python_api_block(), "docs/python-api.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    # the best row's id, p50 and accuracy; then the p50 of the int8 file timed on its own
    assert printed[0].endswith("@cpu") and float(printed[2]) > 0.9 and float(printed[-1]) > 0, printed
    assert _rows(tmp_path / "runs" / "digits" / "results.json")[printed[0]]["status"] == "ok"
