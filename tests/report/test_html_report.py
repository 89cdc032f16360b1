"""report.html on a real tiny run: self-contained, with its table and plots, and it renders in
headless Chromium (a screenshot test, skipped where Chromium is not installed)."""

from __future__ import annotations

import base64
import copy
import gzip
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgekit import report
from edgekit.cli import cli
from edgekit.formats import FORMATS
from edgekit.report import html as html_report
from tests.conftest import real_row

# openvino gains a bf16 twin of fp32 on CPUs with AVX-512 BF16 / AMX
ROWS = ("keras-fp32@cpu", *(f"{fmt}-{p}@cpu" for fmt in ("tflite", "onnx", "openvino")
                            for p in FORMATS[fmt].precisions_for(["fp32", "int8"])))
PLOTS = ("accuracy_vs_latency", "sizes", "latency_distribution")


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory):
    """A copy of the shared tiny build: these tests redraw its report in place."""
    return Path(shutil.copytree(tiny_run.dir, tmp_path_factory.mktemp("html") / "run"))


def _png_images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def test_build_writes_a_self_contained_report_with_plots(run_dir):
    page = (run_dir / "report.html").read_text()
    for row_id in ROWS:
        assert f"data-row='{row_id}'" in page
    images = _png_images(page)
    assert len(images) == 3 and all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in images)
    for name in PLOTS:
        assert (run_dir / "plots" / f"{name}.png").read_bytes() in images
    # Nothing to fetch: no external scripts, styles, fonts or images.
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page) and "<script" not in page
    assert "tensorflow" in page and "name: tiny" in page  # the environment block and the recipe


def test_gzip_sizes_come_from_the_artifact_files(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    sizes = html_report.artifact_sizes(results["rows"], run_dir)
    int8 = next(row for row in results["rows"] if row["id"] == "tflite-int8@cpu")
    raw, packed = sizes[int8["id"]]
    assert raw == int8["size_bytes"]
    assert packed == pytest.approx(len(gzip.compress((run_dir / int8["path"]).read_bytes(), 6)), abs=32)


def test_openvino_ir_counts_xml_and_bin(tmp_path):
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "openvino-fp32.xml").write_bytes(b"<net/>" * 10)
    (tmp_path / "artifacts" / "openvino-fp32.bin").write_bytes(bytes(range(256)) * 4)
    # The recorded path points to where the run used to be: found again under the run dir.
    row = {"id": "openvino-fp32@cpu", "path": "/elsewhere/artifacts/openvino-fp32.xml"}
    assert html_report.artifact_sizes([row], tmp_path)[row["id"]][0] == 60 + 1024


def test_pareto_front_drops_dominated_rows():
    def row(row_id, p50, accuracy):
        return real_row("tflite", "int8", p50=p50, metrics={"accuracy": accuracy}, row_id=row_id)

    results = {"primary_metric": "accuracy", "rows": [row("slow-best", 9, 0.99), row("fast", 1, 0.95),
                                                      row("dominated", 5, 0.94), row("mid", 3, 0.97)]}
    assert html_report.pareto_front(results) == ["fast", "mid", "slow-best"]


def test_report_command_regenerates_from_results(run_dir):
    (run_dir / "report.html").unlink()
    shutil.rmtree(run_dir / "plots")
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert len(_png_images((run_dir / "report.html").read_text())) == 3
    assert sorted(p.stem for p in (run_dir / "plots").glob("*.png")) == sorted(PLOTS)


def test_failed_row_is_shown_but_not_plotted(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    results = json.loads((copy / "results.json").read_text())
    results["rows"][2].update(status="failed", reason="runtime failed: boom", latency_ms=None, metrics={}, delta={},
                              speedup_vs_baseline=None, path=None, size_bytes=None)
    (copy / "results.json").write_text(json.dumps(results))
    latencies = json.loads((copy / "latency.json").read_text())
    del latencies["rows"]["tflite-int8@cpu"]
    (copy / "latency.json").write_text(json.dumps(latencies))
    assert CliRunner().invoke(cli, ["report", str(copy)]).exit_code == 0
    page = (copy / "report.html").read_text()
    assert "<tr class='failed' data-row='tflite-int8@cpu'>" in page and "failed: runtime failed: boom" in page
    assert len(_png_images(page)) == 3
    # The fastest remaining row now heads the Pareto front.
    assert html_report.pareto_front(results)[0] == "tflite-fp32@cpu"


def test_report_command_without_results_exits_2(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "results not found" in result.output


def test_plotting_failure_only_warns(run_dir, tmp_path, monkeypatch, capsys):
    results = json.loads((run_dir / "results.json").read_text())

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(html_report, "write", broken)
    report.write(results, {}, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == results["rows"]
    assert "warning: report.html not written: RuntimeError: no fonts" in capsys.readouterr().err


def _chromium(*args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120,
        )


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    import numpy as np
    from PIL import Image

    page = (run_dir / "report.html").resolve().as_uri()
    dom = _chromium("--dump-dom", page).stdout
    assert dom.count("<tr class=") == len(ROWS) and dom.count("<img ") == 3
    shot = tmp_path / "report.png"
    # The plots are drawn in matplotlib's blue and orange; nothing else on the page uses them,
    # so a page whose images failed to load has none of these pixels. Headless chromium can take
    # the shot before the embedded plots are decoded (seen about once in five runs on a busy
    # 2-core machine, even with a virtual-time budget): the page is the same every time, so the
    # shot is taken up to four times and the best one must show the plots; the window is tall
    # enough that a longer table cannot push them out of the shot.
    plotted = 0
    for _ in range(4):
        _chromium(f"--screenshot={shot}", "--window-size=1400,3200", "--virtual-time-budget=15000", page)
        image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
        assert image.size == (1400, 3200)
        pixels = np.asarray(image, dtype=int).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 200  # text, table rules and plots, not a blank page
        plotted = sum(int((np.abs(pixels - colour).sum(axis=1) < 40).sum()) for colour in ((31, 119, 180), (255, 127, 14)))
        if plotted > 2000:
            break
    assert plotted > 2000, f"only {plotted} plot-coloured pixels: the images did not render"
    shutil.copy(shot, Path(tempfile.gettempdir()) / "edgekit-report-screenshot.png")


def test_report_shows_where_time_goes_and_the_worst_int8_layers(run_dir):
    """The breakdown and the worst-layers table come from the run's own profiles and layer errors."""
    import html as html_lib

    results = json.loads((run_dir / "results.json").read_text())
    page = (run_dir / "report.html").read_text()
    profiles = page[page.index("<table id='profiles'>"):page.index("</table>", page.index("<table id='profiles'>"))]
    profiled = [row for row in results["rows"] if row["status"] == "ok" and (row.get("profile") or {}).get("top_op_types")]
    assert {row["format"] for row in profiled} == {"tflite", "onnx", "openvino"}  # Keras rows have memory only
    for row in profiled:
        assert f"data-row='{row['id']}'" in profiles
        top = row["profile"]["top_op_types"][0]
        assert html_lib.escape(f"{top['type']} {top['share']:.0%}") in profiles
    layers = page[page.index("<table id='layer-errors'>"):]
    int8 = [row for row in results["rows"] if row["precision"] == "int8" and row["status"] == "ok"]
    assert int8 and all(row["layer_error"]["worst"] for row in int8)
    for row in int8:
        assert f"data-row='{row['id']}'" in layers
        assert html_lib.escape(row["layer_error"]["worst"][0]["layer"]) in layers
    # the mem column: every profiled row's peak memory, as the table cells show it
    from edgekit.report.cells import human_size

    for row in profiled:
        assert html_lib.escape(human_size(row["memory"]["peak_bytes"])) in page


def _leaves(doc, path=()):
    """The path of every leaf value of a JSON document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(doc, list) and doc:
        for index, value in enumerate(doc):
            yield from _leaves(value, (*path, index))
    else:
        yield path


def _fields(doc) -> list[tuple]:
    """One leaf path per field (rows[*].status once: in the first row that has it)."""
    first = {}
    for path in _leaves(doc):
        first.setdefault(tuple("*" if isinstance(key, int) else key for key in path), path)
    return list(first.values())


def _set(doc, path, value) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def test_no_field_of_results_json_runs_script_in_the_report(run_dir, tmp_path):
    """Each field of a real results.json set to a payload that changes the page title if it runs
    (in a text node, a quoted attribute and a class alike): the page shows it as text, and the
    results reader refuses it where a number belongs. Then every field at once in headless
    Chromium, as rendered and through `edgekit report`: the title stays the report's own."""
    from edgekit.errors import InputError
    from edgekit.results.read import validate_results

    def payload(n):
        return f"x'\"><img src=x onerror=\"document.title='XSS{n}'\"></title><script>document.title='XSS{n}'</script>"

    def render(doc):
        return html_report.render(doc, run_dir, dict.fromkeys(PLOTS), html_report.artifact_sizes(doc["rows"], run_dir),
                                  html_report.pareto_front(doc))

    def in_chromium(page_file):
        dom = _chromium("--dump-dom", "--virtual-time-budget=3000", page_file.resolve().as_uri()).stdout
        title = re.search(r"<title>(.*?)</title>", dom, re.S)
        assert title and title.group(1).startswith("edgekit report: x'\"&gt;&lt;img"), dom[:300]
        assert "<script" not in dom and 'src="x"' not in dom

    results = json.loads((run_dir / "results.json").read_text())
    for row in results["rows"]:  # a field the page shows that this run's rows lack
        row.setdefault("settings", {})["kept_float"] = ["dense"]
    shown, accepted = [], []
    for n, path in enumerate(_fields(results)):
        doc = copy.deepcopy(results)
        _set(doc, path, payload(n))
        try:
            page = render(copy.deepcopy(doc))
        except (TypeError, ValueError, AttributeError, KeyError):
            continue  # a number formatted as one: the reader refuses such a file (below)
        # the page has no script of its own: any <script or <img src=x came from the payload
        assert "<script" not in page and "<img src=x" not in page, f"{'.'.join(map(str, path))} runs script"
        shown.append(path)
        try:
            validate_results(doc, "results.json")
            accepted.append(path)
        except InputError:
            pass
    # the six fields that ran script before: escaped now, and refused on read where numbers belong
    before = {("benchmark", "threads"), ("benchmark", "runs"), ("environment", "cores"), ("build_seconds",),
              ("rows", 0, "status"), ("rows", 2, "layer_error", "layers_measured")}
    assert before <= set(shown) and before & set(accepted) == {("rows", 0, "status")}
    assert len(shown) > 250 and len(accepted) > 150
    everything = copy.deepcopy(results)
    for n, path in enumerate(shown):  # all at once, but for the few that only render alone
        before_set = copy.deepcopy(everything)
        _set(everything, path, payload(n))
        try:
            render(copy.deepcopy(everything))
        except (TypeError, ValueError, AttributeError, KeyError):
            everything = before_set
    (tmp_path / "page.html").write_text(render(everything))
    in_chromium(tmp_path / "page.html")
    copy_dir = Path(shutil.copytree(run_dir, tmp_path / "run"))
    accepted_doc = copy.deepcopy(results)
    for n, path in enumerate(accepted):
        _set(accepted_doc, path, payload(n))
    (copy_dir / "results.json").write_text(json.dumps(accepted_doc))
    result = CliRunner().invoke(cli, ["report", str(copy_dir)])
    assert result.exit_code == 0, result.output
    in_chromium(copy_dir / "report.html")


def test_plots_drawn_once_are_reused_in_a_new_run_directory(run_dir, tmp_path, monkeypatch):
    from edgekit.cache import Cache, verify

    results = json.loads((run_dir / "results.json").read_text())
    latencies = json.loads((run_dir / "latency.json").read_text())["rows"]
    store = Cache(root=tmp_path / "cache")
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        shutil.copytree(run_dir / "artifacts", folder / "artifacts")
    html_report.write(results, first, latencies, cache=store)
    [entry] = (tmp_path / "cache" / "plots").iterdir()
    verify(entry)  # a cache entry like any other: its files match its checksums

    def no_drawing(*args, **kwargs):
        raise AssertionError("drawn again: the store holds these plots")

    monkeypatch.setattr(html_report, "_scatter", no_drawing)
    html_report.write(results, second, latencies, cache=store)  # a new run directory, same figures
    for name in PLOTS:
        assert (second / "plots" / f"{name}.png").read_bytes() == (first / "plots" / f"{name}.png").read_bytes()
    # Other figures are drawn (and the store never hands back plots of other results).
    changed = json.loads(json.dumps(results))
    changed["rows"][1]["latency_ms"]["p50"] *= 2
    with pytest.raises(AssertionError, match="drawn again"):
        html_report.write(changed, tmp_path / "third", latencies, cache=store)
