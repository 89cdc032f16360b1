"""Property tests on the files edgekit reads besides recipes: image folders, text (csv) files and
results.json files. Whatever hypothesis makes, edgekit reads it or refuses it in one line
(an EdgekitError): never a traceback, a hang (20 s per case) or markup from a field in the report.
Seeded (derandomize) like test_fuzz_inputs.py, 1,000 cases each. Cheap on purpose (about 4 s of
CPU each on 2 cores): the readers are called in-process, no TensorFlow, no subprocess; the results
cases mutate a copy of the shared tiny build's file, cut to three rows.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from edgekit.data import load_dataset
from edgekit.errors import EdgekitError
from edgekit.recipe.schema import DataSpec
from tests.recipe.test_fuzz_inputs import fuzz

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """Where the cases write (a new folder each: removing the last one costs more than a case,
    pytest removes them all later), with ``outside/``, what links out of a generated folder
    point at (nothing writes through them)."""
    folder = tmp_path_factory.mktemp("fuzz-files")
    (folder / "outside").mkdir()
    Image.new("RGB", (4, 4)).save(folder / "outside" / "elsewhere.png")
    return folder


@contextmanager
def _limit(seconds: int):
    """Fail (instead of hanging the suite) when one case takes longer than ``seconds``."""
    def alarm(signum, frame):
        raise TimeoutError(f"one case took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _load_or_one_line(spec, task: str) -> None:
    """The data a build would train on, or an EdgekitError of one line; nothing else."""
    try:
        with _limit(20):
            data = load_dataset(spec, seed=0, calibration_samples=8, task=task)
    except EdgekitError as exc:
        assert "\n" not in exc.message and len(exc.message) < 2000, exc.message
        event("refused: " + re.sub(r"\S*/\S*|\(e\.g\.[^)]*\)|\d+|^\S+ ", "", exc.message.split(": ", 1)[-1])[:30])
        return
    event("read")
    for split in (data.x_train, data.x_test):
        assert len(split) > 0 and np.isfinite(split).all()


# --------------------------------------------------------------------------- image folders

ENTRY_KINDS = ["png", "png", "png", "jpeg", "png16", "corrupt", "empty", "text", "fifo_png", "fifo_txt", "loop",
               "dangling", "link_out_file", "link_out_folder", "link_in_file", "link_in_folder", "subfolder", "huge"]
NAMES = st.sampled_from(["a", "b", "img", ".hidden", "__MACOSX", "x y", "ü", "train", "test", "val", "0", "A"])
_SUFFIX = {"jpeg": ".jpg", "empty": ".jpg", "text": ".txt", "fifo_txt": ".txt", "link_out_folder": "",
           "link_in_folder": "", "subfolder": ""}


def _make_entry(folder: Path, name: str, kind: str, size: int, mode: str, outside: Path) -> None:
    path = folder / (name + _SUFFIX.get(kind, ".png"))
    if os.path.lexists(path):
        return  # never written through a link made by an earlier entry
    rng = np.random.default_rng(size)
    if kind in ("png", "jpeg"):
        image = Image.fromarray(rng.integers(0, 256, (size, size, 3) if mode != "L" else (size, size), dtype=np.uint8))
        (image.convert(mode) if mode in ("RGBA", "P") and kind == "png" else image).save(path)
    elif kind == "png16":
        Image.fromarray(rng.integers(0, 65535, (size, size), dtype=np.uint16)).save(path)
    elif kind == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(size * 3))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image")
    elif kind in ("fifo_png", "fifo_txt"):
        os.mkfifo(path)
    elif kind == "loop":
        os.symlink(path, path)
    elif kind == "dangling":
        os.symlink(folder / "nowhere.png", path)
    elif kind == "link_out_file":
        os.symlink(outside / "elsewhere.png", path)
    elif kind == "link_out_folder":
        os.symlink(outside, path)
    elif kind == "link_in_file":
        target = next((f for f in folder.glob("*.png") if not f.is_symlink()), None)
        if target is not None:
            os.symlink(target, path)
    elif kind == "link_in_folder":
        os.symlink(folder, path)
    elif kind == "subfolder":
        path.mkdir()
    elif kind == "huge":
        with open(path, "wb") as handle:
            handle.truncate((1 << 30) + 1)  # sparse


@st.composite
def image_folders(draw) -> list:
    """(folder, entry name, kind, pixel size, mode) of each entry: images at the top or in class
    folders; in half the cases one entry in four is of any kind, at any level."""
    hostile = draw(st.booleans())
    classes = draw(st.lists(NAMES, min_size=0, max_size=4, unique=True))
    entries = []
    for folder in [""] + classes:
        for _ in range(draw(st.integers(0, 6)) if (folder == "") == (not classes) or hostile else 0):
            kind = draw(st.sampled_from(ENTRY_KINDS) if hostile and draw(st.integers(0, 3)) == 0 else st.sampled_from(["png", "jpeg"]))
            entries.append((folder, draw(NAMES), kind, draw(st.integers(1, 9)), draw(st.sampled_from(["RGB", "L", "RGBA", "P"]))))
    return entries


@fuzz(1000)
@given(entries=image_folders(), size=st.sampled_from([None, [4, 4], [9, 3]]), channels=st.sampled_from([None, 1, 3, 4]),
       task=st.sampled_from(["classification", "classification", "fidelity"]))
def test_generated_image_folders_are_read_or_refused_in_one_line(scratch, entries, size, channels, task):
    root = Path(tempfile.mkdtemp(dir=scratch))
    for folder, name, kind, pixels, mode in entries:
        if not os.path.lexists(root / folder):
            (root / folder).mkdir()
        if (root / folder).is_dir() and not (root / folder).is_symlink():
            _make_entry(root / folder, name, kind, pixels, mode, scratch / "outside")
    _load_or_one_line(DataSpec(source="images", path=str(root), image_size=size, channels=channels), task)


# --------------------------------------------------------------------------- text files

CELLS = st.one_of(st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
                  st.sampled_from(["good", "bad", "", "nan", "1", "2.5", "inf", "\"", "a,b", "x\ny",
                                   "\u2019s", "\ufb01ne", "\x00", "NA", " "]))


LABELS = st.sampled_from(["good", "bad", "neutral", "1", "2.5", "-3", "ü", " bad "])
ODD_LABELS = st.sampled_from(["", "nan", "NA", "inf", "1e400", "\x00"])


@st.composite
def text_files(draw) -> bytes:
    """Mostly csv files as a spreadsheet writes them (a header with text and label, texts quoted
    where needed) holding odd texts and labels from a few classes; one in four as a hand might
    write it: any header, any number of cells, quotes left unbalanced."""
    if draw(st.integers(0, 3)) == 0:
        header = draw(st.lists(st.sampled_from(["text", "label", "review", "y", "", "text", "label "]), min_size=1, max_size=4))
        rows = draw(st.lists(st.lists(CELLS, min_size=len(header) - 1, max_size=len(header) + 1), max_size=40))
        lines = [",".join(header)] + [",".join(f'"{c}"' if draw(st.booleans()) else c for c in row) for row in rows]
        text = "\n".join(lines)
    else:
        header = draw(st.permutations(["text", "label", *draw(st.lists(st.sampled_from(["id", "review", "y"]), max_size=1))]))
        classes = draw(st.lists(LABELS, min_size=2, max_size=3, unique=True))
        if draw(st.integers(0, 3)) == 0:
            classes.append(draw(ODD_LABELS))
        rows = draw(st.lists(st.tuples(CELLS, st.sampled_from(classes), st.sampled_from(["7", ""])), min_size=2, max_size=40))
        buffer = io.StringIO()
        csv.writer(buffer).writerows([header, *([{"text": t, "label": label}.get(name, other) for name in header]
                                                for t, label, other in rows)])
        text = buffer.getvalue()
    content = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 6)) == 0:  # a broken encoding or a byte-order mark
        content = draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b""])) + content + draw(st.binary(max_size=8))
    return content


@fuzz(1000)
@given(content=text_files(), task=st.sampled_from(["classification", "classification", "regression"]),
       options=st.just({}) | st.fixed_dictionaries({}, optional={"text_column": st.sampled_from(["text", "review", "nope"]),
                                                   "label_column": st.sampled_from(["label", "y", "text"]),
                                                   "sequence_length": st.integers(1, 40), "max_tokens": st.integers(3, 50)}))
def test_generated_text_files_are_read_or_refused_in_one_line(scratch, content, task, options):
    path = Path(tempfile.mkdtemp(dir=scratch)) / "reviews.csv"
    path.write_bytes(content)
    _load_or_one_line(DataSpec(source="text", path=str(path), **options), task)


# --------------------------------------------------------------------------- results files

#: markup that must reach the report as text (the check looks for its tags in the page)
MARKUP = st.sampled_from(["<script>alert(1)</script>", "x'\"><b>", "\"><b>x</b>"])
ODD = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([2**70, -(2**70), 10**400]),
                st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), MARKUP, MARKUP,
                st.sampled_from(["ok", "failed", "interrupted", "keras-fp32@cpu"]),
                st.lists(st.integers(0, 3), max_size=2),
                st.dictionaries(st.sampled_from(["p50", "a", "accuracy"]), st.integers(0, 2), max_size=2))


def _paths(doc, path=()):
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*path, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from _paths(value, (*path, index))


def _mutate(data, text: str, fields: st.SearchStrategy) -> dict:
    """The results file ``text`` with one to three of its fields (drawn from ``fields``) set to odd
    values, dropped or emptied (each change drawn on its own, so a failure shows the changes, not
    the whole file). A field an earlier change removed is left alone."""
    doc = json.loads(text)
    for _ in range(data.draw(st.integers(1, 3), label="changes")):
        path = data.draw(fields, label="field")
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            value = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue
        action = data.draw(st.sampled_from(["set", "set", "set", "drop", "empty"]), label="action")
        if action == "drop" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "empty" and isinstance(value, (dict, list)):
            parent[path[-1]] = type(value)()
        else:
            parent[path[-1]] = data.draw(ODD, label="value")
    return doc


@dataclass
class ResultsRun:
    """A run directory whose results.json the cases rewrite, an untouched copy to compare with,
    the file as the build wrote it and the paths of its fields (left out of the repr hypothesis
    prints on a failure)."""
    run: Path
    original: Path
    text: str = field(repr=False)
    fields: st.SearchStrategy = field(repr=False)


@pytest.fixture(scope="module")
def results_run(tiny_run, tmp_path_factory) -> ResultsRun:
    """Two copies of the tiny build's run directory, without its artifacts (readers need none),
    its results cut to the baseline row and an int8 row (the one with the most kinds of field):
    every reader checks the whole file, and two rows read in a quarter of the time of eight."""
    folder = tmp_path_factory.mktemp("fuzz-results")
    base = json.loads((tiny_run.dir / "results.json").read_text())
    base["rows"] = [base["rows"][0], next(row for row in base["rows"] if row.get("layer_error"))]
    for name in ("run", "original"):
        shutil.copytree(tiny_run.dir, folder / name, ignore=shutil.ignore_patterns("artifacts", "model", "tensorboard", "plots"))
        (folder / name / "results.json").write_text(json.dumps(base))
    _read_everything(folder / "run", folder / "original", True)  # as the build wrote it, the file reads
    return ResultsRun(folder / "run", folder / "original", json.dumps(base), _fields(base))


def _fields(doc: dict) -> st.SearchStrategy:
    """The path of a field of ``doc``: half the time one at most two keys deep (a row's status, a
    benchmark setting), where most fields a page or a gate shows are; else any (a profile's op)."""
    paths = [p for p in _paths(doc) if p]
    return st.sampled_from([p for p in paths if len(p) <= 3]) | st.sampled_from(paths)


def _read_everything(run: Path, original: Path, check_results: bool) -> None:
    """Every reader of results files, as the commands and the API call them (the report without
    its plots, which matplotlib takes a second to draw). ``edgekit.check`` reads the recipe too
    (a third of a case's time): it reads the file as results or as the baseline, in turn."""
    import edgekit
    from edgekit.report import compare, html, readme_table
    from edgekit.results.read import load_results

    results, unchanged = load_results(run), load_results(original)
    page = html.render(results, run, dict.fromkeys(("accuracy_vs_latency", "sizes", "latency_distribution")),
                       html.artifact_sizes(results["rows"], run), html.pareto_front(results))
    assert "<script" not in page and "<b>" not in page
    for a, b in ((results, unchanged), (unchanged, results)):
        compare.format_text(compare.compare(a, b, "a", "b", compare.parse_fail_on(())))
    readme_table.line(results)
    loaded = edgekit.load(run)
    repr(loaded), loaded.failed, loaded.best(0.01, "cpu"), loaded.best(None, "cpu")
    if check_results:
        edgekit.check(run, baseline=original / "results.json")
    else:
        edgekit.check(original, baseline=run / "results.json")


@fuzz(1000)
@given(data=st.data(), check_results=st.booleans())
def test_mutated_results_files_are_read_or_refused_in_one_line(results_run, data, check_results):
    run, original = results_run.run, results_run.original
    (run / "results.json").write_text(json.dumps(_mutate(data, results_run.text, results_run.fields), allow_nan=True))
    try:
        with _limit(20):
            _read_everything(run, original, check_results)
        event("read")
    except EdgekitError as exc:
        assert "\n" not in exc.message and len(exc.message) < 2000, exc.message
        event(f"refused (exit {exc.exit_code})")
