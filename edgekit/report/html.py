"""report.html: one self-contained page per run, and its plots as PNG files beside it.

The page needs no network to open: CSS is inline and the plots are embedded as base64 data
URIs (the same PNGs are written to ``plots/`` for PR comments and slides). It shows the
results table, accuracy against latency with the Pareto front, artifact sizes raw and
gzipped, the latency distribution of every row, the environment and the recipe.
matplotlib is imported only when a report is drawn, and only its object API (no pyplot),
so drawing never touches global state or needs a display.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from edgekit.evaluate.weights import gzip_size
from edgekit.formats import FORMATS, format_for_suffix
from edgekit.report.cells import COLUMNS, cells, human_ms, human_size, output_cells
from edgekit.results.metrics import higher_is_better, judged_metric
from edgekit.results.read import load_results


def esc(value: object) -> str:
    """Any value as text safe inside an element or a quoted attribute (class='...', title='...'):
    ``&``, ``<``, ``>``, ``"`` and ``'`` escaped. Every value from results.json goes through it,
    numbers included: a results file copied from CI may hold anything in any field."""
    return html.escape(str(value), quote=True)


REPORT_NAME = "report.html"
PLOTS_DIR = "plots"
_MARKERS = {"fp32": "o", "fp16": "^", "bf16": "<", "dynamic": "D", "int8": "s", "int8-mixed": "X", "int8-fast": "P", "int16x8": "v"}


def regenerate(run_dir: Path) -> Path:
    """Redraw RUN_DIR/report.html from its results.json (and latency.json when present)."""
    run_dir = Path(run_dir)
    results = load_results(run_dir / "results.json")
    if isinstance(results.get("search"), dict):  # a search's folder: its own page (edgekit.search.report)
        from edgekit.search import report as search_report

        return search_report.write(results, run_dir)
    return write(results, run_dir)


def write(results: dict, run_dir: Path, latencies: dict[str, list[float]] | None = None, cache=None) -> Path:
    """Draw the plots, write them to RUN_DIR/plots/*.png, and write RUN_DIR/report.html.

    With the build's stage ``cache`` (``edgekit.cache.Cache``), plots drawn before from the same
    figures are its ``plots`` entries: a cached rebuild into a new run directory copies them
    instead of importing matplotlib (0.76 s alone) and drawing (about a second more)."""
    run_dir = Path(run_dir)
    if latencies is None:
        latencies = _read_latencies(run_dir)
    sizes = artifact_sizes(results["rows"], run_dir)
    front = pareto_front(results)
    key = _plots_key(results, sizes, front, latencies)

    def draw() -> dict[str, bytes | None]:
        return {
            "accuracy_vs_latency": _scatter(results, front),
            "sizes": _size_bars(results, sizes),
            "latency_distribution": _distribution(results, latencies),
        }

    plots = _drawn_before(run_dir, key)
    if plots is None and cache is not None:
        from edgekit.cache import Cache

        # an instance of its own: the plots are no stage of the build (its manifest and reused lists)
        own = Cache(root=cache.root, enabled=cache.enabled, log=cache.log)
        plots, _ = own.fetch("plots", key[:32], "report plots", load=_load_plots, compute=draw, store=_store_plots)
    if plots is None:
        plots = draw()
    (run_dir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    for name, png in plots.items():
        file = run_dir / PLOTS_DIR / f"{name}.png"
        if png is not None:
            file.write_bytes(png)
        elif file.exists():
            file.unlink()  # a plot from an earlier version of the results would mislead
    _remember_plots(run_dir, key, plots)
    path = run_dir / REPORT_NAME
    tmp = path.with_name(path.name + ".tmp")  # readers never see half a page
    tmp.write_text(render(results, run_dir, plots, sizes, front), encoding="utf-8")
    tmp.replace(path)
    return path


#: in plots/: what the PNGs beside it were drawn from (a hash) and each PNG's sha256
_PLOTS_RECORD = ".drawn_from.json"


def _plots_key(results: dict, sizes: dict, front: list[str], latencies: dict) -> str:
    """A hash of everything the three plots show (and of the code and matplotlib that draw them)."""
    import hashlib
    from importlib import metadata

    try:
        matplotlib = metadata.version("matplotlib")
    except metadata.PackageNotFoundError:
        matplotlib = ""
    rows = [{k: row.get(k) for k in ("id", "format", "precision", "status", "latency_ms", "metrics")}
            for row in results["rows"]]
    shown = {"metric": judged_metric(results), "rows": rows, "sizes": sizes, "front": front,
             "latencies": {row["id"]: latencies.get(row["id"]) for row in results["rows"]},
             "matplotlib": matplotlib, "code": hashlib.sha256(Path(__file__).read_bytes()).hexdigest()}
    return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()


def _drawn_before(run_dir: Path, key: str) -> dict[str, bytes | None] | None:
    """The plots already in RUN_DIR/plots when they were drawn from exactly what ``key`` hashes
    (a cached rebuild: the same rows, latencies and sizes) and no file changed since; else None.
    Drawing them costs a second of matplotlib; the same inputs draw the same pictures."""
    import hashlib

    folder = run_dir / PLOTS_DIR
    try:
        record = json.loads((folder / _PLOTS_RECORD).read_text())
        if record.get("key") != key:
            return None
        plots = {}
        for name, digest in record["files"].items():
            if digest is None:
                plots[name] = None
                continue
            png = (folder / f"{name}.png").read_bytes()
            if hashlib.sha256(png).hexdigest() != digest:
                return None
            plots[name] = png
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return plots if set(plots) == {"accuracy_vs_latency", "sizes", "latency_distribution"} else None


def _store_plots(plots: dict[str, bytes | None], folder: Path) -> None:
    """A plots cache entry: the PNGs, and which plots had nothing to draw."""
    for name, png in plots.items():
        if png is not None:
            (folder / f"{name}.png").write_bytes(png)
    (folder / "plots.json").write_text(json.dumps(sorted(plots)))


def _load_plots(folder: Path) -> dict[str, bytes | None]:
    names = json.loads((folder / "plots.json").read_text())
    return {name: (folder / f"{name}.png").read_bytes() if (folder / f"{name}.png").exists() else None
            for name in names}


def _remember_plots(run_dir: Path, key: str, plots: dict[str, bytes | None]) -> None:
    import hashlib

    record = {"key": key, "files": {name: hashlib.sha256(png).hexdigest() if png is not None else None
                                    for name, png in plots.items()}}
    path = run_dir / PLOTS_DIR / _PLOTS_RECORD
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)


def _read_latencies(run_dir: Path) -> dict[str, list[float]]:
    try:
        return json.loads((run_dir / "latency.json").read_text()).get("rows", {})
    except (OSError, ValueError, AttributeError):
        return {}  # the distribution plot says it is missing; the rest of the page still works


def artifact_files(row: dict, run_dir: Path) -> list[Path]:
    """The files a row's artifact is made of (a SavedModel folder, an OpenVINO .xml + .bin pair)."""
    if not row.get("path"):
        return []
    from edgekit.report.results import resolve_path

    recorded = Path(row["path"])
    # Paths are relative to the run directory (resolve_path). Results files written before that
    # recorded them from where the build ran: the run directory's own files first, then as written.
    candidates = (resolve_path(row["path"], run_dir), run_dir / "artifacts" / recorded.name,
                  run_dir / "model" / recorded.name, recorded)
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        return []
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file())
    # The row's own format says which files belong to it (OpenVINO's .xml comes with its .bin);
    # the suffix is the fallback for rows of a format this edgekit has no row for.
    fmt = FORMATS.get(row.get("format")) or format_for_suffix(path.suffix)
    return [f for f in fmt.files(path) if f.is_file()] if fmt else [path]


def format_title(name: str) -> str:
    """How the report names a format: its table label ("OpenVINO"), else the name in the row."""
    fmt = FORMATS.get(name)
    return fmt.title if fmt else name


def artifact_sizes(rows: list[dict], run_dir: Path) -> dict[str, tuple[int, int] | None]:
    """Row id -> (raw bytes, gzip bytes) of its artifact files on disk, or None when absent."""
    sizes, cache = {}, {}
    for row in rows:
        if row.get("size_bytes") and row.get("gzip_bytes"):  # measured by the build itself (gzip -9)
            sizes[row["id"]] = (row["size_bytes"], row["gzip_bytes"])
            continue
        files = tuple(artifact_files(row, run_dir))
        if files and files not in cache:  # rows on several targets share one artifact
            cache[files] = (sum(f.stat().st_size for f in files), gzip_size(files))
        sizes[row["id"]] = cache.get(files) if files else None
    return sizes


def _measured(results: dict) -> list[dict]:
    metric = judged_metric(results)
    return [r for r in results["rows"] if r["status"] == "ok" and r.get("latency_ms")
            and r.get("metrics", {}).get(metric) is not None]


def pareto_front(results: dict) -> list[str]:
    """Ids of rows no other row beats on both latency (p50) and the metric the budgets judge
    (``judged_metric``: check.defaults.metric, else the task metric)."""
    metric = judged_metric(results)
    sign = 1 if higher_is_better(results, metric) else -1
    front, best = [], float("-inf")
    for row in sorted(_measured(results), key=lambda r: (r["latency_ms"]["p50"], -sign * r["metrics"][metric])):
        if sign * row["metrics"][metric] > best:
            front.append(row["id"])
            best = sign * row["metrics"][metric]
    return front


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _scatter(results: dict, front: list[str]) -> bytes | None:
    fig = scatter_figure(results, front)
    return _png(fig) if fig is not None else None


def scatter_figure(results: dict, front: list[str]):
    """The accuracy (the judged metric) against p50 latency figure, the Pareto front marked, each
    point labelled with its row id (labels never overlap: ``edgekit.report.labels``)."""
    from edgekit.report import labels

    rows, metric = _measured(results), judged_metric(results)
    if not rows:
        return None
    fig = _figure(10, 5.5)
    ax = fig.add_subplot()
    formats = list(dict.fromkeys(r["format"] for r in rows))
    points, names = [], []
    for row in sorted(rows, key=lambda r: r["latency_ms"]["p50"]):
        lat, y = row["latency_ms"], row["metrics"][metric]
        color = f"C{formats.index(row['format']) % 10}"
        # The bar reaches from the p50 to the p90: how noisy the timing was.
        ax.errorbar(lat["p50"], y, xerr=[[0], [max(lat.get("p90", lat["p50"]) - lat["p50"], 0)]], fmt=_MARKERS.get(row["precision"], "P"),
                    color=color, markersize=9, capsize=3, label=f"{format_title(row['format'])} {row['precision']}")
        points.append((lat["p50"], y))
        names.append(row["id"])
    pts = sorted((r["latency_ms"]["p50"], r["metrics"][metric]) for r in rows if r["id"] in front)
    ax.plot(*zip(*pts), drawstyle="steps-post", color="black", linestyle="--", linewidth=1, zorder=0)
    ax.scatter(*zip(*pts), s=260, facecolors="none", edgecolors="black", linewidths=1.2, label="Pareto front")
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.15)  # room for the row labels at the edges
    ax.set_xlabel("p50 latency, ms (log scale; bar to p90)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs latency, batch 1")
    ax.grid(True, which="both", alpha=0.3)
    handles, legend_labels = ax.get_legend_handles_labels()
    unique = dict(zip(legend_labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, loc="best")
    # Last, once the layout is final: neighbours in latency often share an accuracy.
    labels.place(ax, points, names)
    return fig


def _size_bars(results: dict, sizes: dict) -> bytes | None:
    rows = [r for r in results["rows"] if sizes.get(r["id"])]
    if not rows:
        return None
    fig = _figure(10, 1.2 + 0.55 * len(rows))
    ax = fig.add_subplot()
    y = list(range(len(rows)))
    raw = [sizes[r["id"]][0] / 1024 for r in rows]
    packed = [sizes[r["id"]][1] / 1024 for r in rows]
    ax.barh([i - 0.2 for i in y], raw, height=0.4, color="C0", label="raw")
    ax.barh([i + 0.2 for i in y], packed, height=0.4, color="C1", label="gzip -9")
    for i, row in enumerate(rows):
        ax.annotate(f" {human_size(sizes[row['id']][0])}", (raw[i], i - 0.2), va="center", fontsize=8)
        ax.annotate(f" {human_size(sizes[row['id']][1])}", (packed[i], i + 0.2), va="center", fontsize=8)
    ax.set_yticks(y, [r["id"] for r in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(raw + packed) * 1.25)
    ax.set_xlabel("KiB on disk (all files of the artifact)")
    ax.set_title("artifact size, raw and gzipped")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _distribution(results: dict, latencies: dict[str, list[float]]) -> bytes | None:
    rows = [r for r in results["rows"] if latencies.get(r["id"])]
    if not rows:
        return None
    fig = _figure(10, 1.2 + 0.7 * len(rows))
    ax = fig.add_subplot()
    data = [latencies[r["id"]] for r in rows]
    # Whiskers at the 1st and 99th percentile: the tail a user feels, not an IQR convention.
    ax.boxplot(data, orientation="horizontal", whis=(1, 99), widths=0.6, patch_artist=True,
               boxprops={"facecolor": "C0", "alpha": 0.35}, medianprops={"color": "C3", "linewidth": 2},
               flierprops={"marker": ".", "markersize": 3, "alpha": 0.4})
    # The numbers go into the row labels, where they can never cover a box.
    labels = [f"{r['id']}\np50 {human_ms(r['latency_ms']['p50'])}, "
              f"p99 {human_ms(r['latency_ms'].get('p99', r['latency_ms']['p50']))}, n={len(d)}"
              if r.get("latency_ms") else r["id"] for r, d in zip(rows, data)]
    ax.set_yticks(range(1, len(rows) + 1), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency per batch-1 inference, ms (log scale; box = quartiles, whiskers = p1..p99)")
    ax.set_title("latency distribution, every timed run")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _png(fig)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1500px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.notes{min-width:22em;font-size:.9em}td.id{white-space:nowrap}
tr.failed td{background:#fde8e8}tr.skipped td{color:#888}tr.noted td{background:#fff8e1}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
p.flag{background:#fff3cd;padding:.4em .6em}pre{background:#f6f6f6;padding:1em;overflow:auto}
ul.meta{padding-left:1.2em}.muted{color:#777}.warning{color:#a33}
.bar{display:flex;width:420px;height:1.3em;border:1px solid #ccc}.seg{display:block;height:100%;overflow:hidden;
font-size:.75em;color:#fff;white-space:nowrap;padding-left:2px}ol{margin:0;padding-left:1.4em}
"""


def _table(results: dict, sizes: dict, front: list[str]) -> str:
    metric = results["primary_metric"]
    header = [c.replace("metric", metric).replace("delta", f"Δ {metric}") for c in COLUMNS]
    numeric = {"size", "gzip", "sparsity", metric, f"Δ {metric}", "p50", "speedup", "mem"}
    out = ["<table id='results'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row, display in zip(results["rows"], cells(results)):
        display = list(display)
        if row["id"] in front:
            display[0] += " ★"
        css = row["status"] if row["status"] != "ok" else ("noted" if row.get("notes") else "ok")
        kinds = {header[0]: "id", header[-1]: "notes"}  # the id never wraps; the notes get the room
        tds = "".join(f"<td class='num'>{esc(c)}</td>" if h in numeric else
                      f"<td class='{kinds[h]}'>{esc(c)}</td>" if h in kinds else f"<td>{esc(c)}</td>"
                      for h, c in zip(header, display))
        out.append(f"<tr class='{esc(css)}' data-row='{esc(row['id'])}'>{tds}</tr>")
    return "\n".join(out) + "</tbody></table>"


def _outputs(results: dict) -> str:
    """A model of several outputs: each output's own metric per row (``cells.output_cells``)."""
    table = output_cells(results)
    if not table:
        return ""
    header, *rows = table
    body = "".join("<tr>" + "".join(f"<td class='{'id' if i == 0 else 'num'}'>{esc(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return ("<p>Each output on its own (* the row's metric: the worst output of the recipe's task):</p>"
            "<table id='outputs'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
            + f"</tr></thead><tbody>{body}</tbody></table>\n")


def _flag_lines(results: dict) -> str:
    """A suspect baseline and the loss count (``report.flags``), above the table."""
    from edgekit.report.flags import summary_lines

    return "".join(f"<p class='flag'><strong>{esc(line)}</strong></p>\n" for line in summary_lines(results))


def _time_breakdown(results: dict) -> str:
    """Per row with a profile: a bar of its op types' shares of the time, accelerated ops in
    green and the others in orange, and what the profile says was not accelerated."""
    lines = []
    for row in results["rows"]:
        profile = row.get("profile") or {}
        types = profile.get("top_op_types") or []
        if row["status"] != "ok" or not types:
            continue
        segments, known = [], 0.0
        for op in types:
            share = float(op.get("share") or 0.0)
            known += share
            colour = "#5aa469" if op.get("accelerated") else "#e8894a"
            label = f"{op['type']} {share:.0%}" + ("" if op.get("accelerated") else " (not accelerated)")
            segments.append(f"<span class='seg' style='width:{share * 100:.1f}%;background:{colour}' "
                            f"title='{esc(label)}'>{esc(op['type']) if share >= 0.08 else ''}</span>")
        if known < 0.999:
            segments.append(f"<span class='seg' style='width:{(1 - known) * 100:.1f}%;background:#bbb' "
                            f"title='other op types {1 - known:.0%}'></span>")
        listed = ", ".join(f"{op['type']} {float(op.get('share') or 0):.0%}{'' if op.get('accelerated') else '*'}"
                           for op in types)
        slow = profile.get("not_accelerated") or {}
        outside = (f"{slow.get('ops')} op(s) not accelerated: {float(slow.get('share') or 0):.0%} of time "
                   f"({', '.join(slow.get('types') or [])})") if slow.get("ops") else "every op accelerated"
        parts = f"; {profile['partitions']} XNNPACK partition(s)" if profile.get("partitions") is not None else ""
        lines.append(f"<tr data-row='{esc(row['id'])}'><td>{esc(row['id'])}</td><td><div class='bar'>{''.join(segments)}"
                     f"</div><div class='muted'>{esc(listed)}</div></td><td>{esc(outside + parts)}</td></tr>")
    if not lines:
        return "<p class='muted'>No per-op profiles in this run (benchmark.profile: false, or no row could be profiled).</p>"
    return ("<table id='profiles'><thead><tr><th>row</th><th>share of time by op type (green: accelerated; "
            "orange, *: not)</th><th>not accelerated</th></tr></thead><tbody>" + "\n".join(lines) + "</tbody></table>"
            "<p class='muted'>Measured in a fresh process per row, outside the timed rounds; every op of each row "
            "is in profiles/&lt;row id&gt;.json.</p>")


def _devices(results: dict) -> str:
    """What each timed row relied on (``edgekit.report.devices``): device, clock, temperature,
    retries, waits; and what a pool's fleet decided."""
    from edgekit.report import devices

    relied = devices.table(results)
    if not relied:
        return "<p class='muted'>No row carries a device, clocks, retries or waits.</p>"
    header, *rows = relied
    body = "".join(f"<tr data-row='{esc(row[0])}'>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    fleet = "".join(f"<li>{esc(line)}</li>" for line in devices.fleet_lines(results))
    return ("<table id='devices'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>"
            + body + "</tbody></table>" + (f"<ul>{fleet}</ul>" if fleet else "")
            + "<p class='muted'>Clock: the lowest and highest core frequency read from /sys before and after each "
            "round; temperature: the hottest thermal zone; a dash where the machine exposes none.</p>")


def _layer_errors(results: dict) -> str:
    """Per int8 row: the layers whose outputs drift most from the float model's."""
    lines, how = [], ""
    for row in results["rows"]:
        record = row.get("layer_error") or {}
        if row["status"] != "ok" or not record.get("worst"):
            continue
        how = record.get("how") or how
        cells_ = []
        for entry in record["worst"]:
            shown = str(entry["layer"])
            figures = [f"{label} {entry[key]:{fmt}}{unit}" for key, label, fmt, unit in
                       (("added_db", "adds noise at", ".1f", " dB"), ("snr_db", "output SNR", ".1f", " dB"),
                        ("local_snr_db", "alone", ".1f", " dB"), ("nrmse", "NRMSE", ".3f", ""))
                       if isinstance(entry.get(key), (int, float))]
            if figures:
                shown += ": " + ", ".join(figures)
            cells_.append(f"<li>{esc(shown)}</li>")
        kept = (row.get("settings") or {}).get("kept_float") or []
        note = f"<div class='muted'>kept float: {esc(', '.join(map(str, kept)))}</div>" if kept else ""
        # as the build log counts them: Keras layers compared of all; a fused group is one comparison
        counted = (f"{record.get('layers_matched')}/{record['layers_total']}" if record.get("layers_total") is not None
                   else str(record.get("layers_measured")))
        if record.get("layers_measured") not in (None, record.get("layers_matched")):
            counted += f" ({record['layers_measured']} comparisons: a fused group once)"
        lines.append(f"<tr data-row='{esc(row['id'])}'><td>{esc(row['id'])}</td><td>{esc(counted)}</td>"
                     f"<td><ol>{''.join(cells_)}</ol>{note}</td></tr>")
    if not lines:
        return "<p class='muted'>No int8 rows with a per-layer error in this run.</p>"
    return ("<table id='layer-errors'><thead><tr><th>row</th><th>layers compared</th><th>worst layers, by the noise each "
            "adds (lower dB is worse)</th></tr></thead><tbody>" + "\n".join(lines)
            + f"</tbody></table><p class='muted'>{esc(how)}. Keep a layer in float with quantize.keep_float, or let "
            "quantize.max_drop choose (the int8-mixed rows).</p>")


def _contracts(results: dict) -> str:
    """Per artifact (its first row): each input and output as its input contract gives it."""
    from edgekit.report.contract import data_warnings, tensor_cells

    lines, seen = [], set()  # esc: any value (a hand-edited file may hold null or a number where text was)
    warned = "".join(f"<p class='warning'>warning: {esc(w)}</p>" for w in data_warnings(results))
    for row in results["rows"]:
        contract = row.get("contract")
        stem = row["id"].rsplit("@", 1)[0]
        if not contract or stem in seen:
            continue
        seen.add(stem)
        tensors = [(t, "input") for t in contract["inputs"]] + [(t, "output") for t in contract["outputs"]]
        for tensor, what in tensors:
            lines.append(f"<tr data-row='{esc(row['id'])}'>"
                         + "".join(f"<td>{esc(c)}</td>" for c in tensor_cells(row["id"], tensor, what, contract)) + "</tr>")
    if not lines:
        return warned + "<p class='muted'>No artifact with a known interface in this run.</p>"
    head = ["row", "tensor", "dtype", "shape", "layout", "range / quantization",
            "preprocessing (inside the artifact: *)", "runtime settings"]
    return (warned + "<table id='contracts'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "\n".join(lines) + "</tbody></table><p class='muted'>Every row's contract, with each step's numbers, is "
            "artifacts/&lt;row id&gt;.contract.json (and the row's contract in results.json).</p>")


def _img(name: str, png: bytes | None, caption: str) -> str:
    if png is None:
        return f"<p class='muted'>{esc(name)}: nothing to plot ({esc(caption)}).</p>"
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{esc(caption)} (also {PLOTS_DIR}/{esc(name)}.png)</figcaption></figure>")


def render(results: dict, run_dir: Path, plots: dict, sizes: dict, front: list[str]) -> str:
    """The whole page as one string."""
    env, bench = results.get("environment") or {}, results.get("benchmark") or {}
    recipe_file = run_dir / "recipe.yaml"
    recipe_text = recipe_file.read_text() if recipe_file.is_file() else json.dumps(results["recipe"], indent=2)
    meta = [
        f"baseline row: <code>{esc(results['baseline'])}</code>; task metric: {esc(results['primary_metric'])}",
        f"benchmark: batch 1, {esc(bench.get('threads'))} thread(s), {esc(bench.get('warmup'))} warm-up runs, at least "
        f"{esc(bench.get('runs'))} timed runs over {esc(bench.get('inputs'))} fixed inputs",
        f"machine: {esc(env.get('cpu'))}, {esc(env.get('cores'))} cores, ISA {esc(', '.join(map(str, env.get('isa') or [])) or '-')}",
        f"edgekit {esc(results.get('edgekit_version'))}, build time {esc(results.get('build_seconds'))} s",
    ]
    env_rows = [(k, env[k]) for k in ("cpu", "isa", "cores", "machine", "os", "python") if k in env]
    env_rows += list((env.get("packages") or {}).items())
    env_table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(', '.join(map(str, v)) if isinstance(v, list) else v)}</td></tr>"
                        for k, v in env_rows)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgekit report: {esc(results['recipe'].get('name', ''))}</title>
<style>{_CSS}</style></head><body>
<h1>edgekit report: {esc(results['recipe'].get('name', ''))}</h1>
<ul class="meta">{''.join(f'<li>{m}</li>' for m in meta)}</ul>
<h2>Results</h2>
{_flag_lines(results)}{_table(results, sizes, front)}
{_outputs(results)}<p class="muted">★ on the Pareto front: no other row is both faster (p50) and at least as accurate.
Speedup is the baseline row's p50 over the row's p50; gzip is the artifact compressed with gzip -9.</p>
<h2>Accuracy vs latency</h2>
{_img("accuracy_vs_latency", plots["accuracy_vs_latency"], "rows measured ok; circled points form the Pareto front")}
<h2>Size</h2>
{_img("sizes", plots["sizes"], "raw and gzip sizes of every file of each artifact")}
<h2>Latency distribution</h2>
{_img("latency_distribution", plots["latency_distribution"], "every timed run per row, from latency.json")}
<h2>Devices, clocks and temperatures</h2>
{_devices(results)}
<h2>Where the time goes</h2>
{_time_breakdown(results)}
<h2>Layers that lose most to int8</h2>
{_layer_errors(results)}
<h2>Input contract</h2>
{_contracts(results)}
<h2>Environment</h2>
<table id="environment">{env_table}</table>
<h2>Recipe</h2>
<p class="muted">sha256 {esc(results['recipe'].get('sha256'))}</p>
<pre id="recipe">{esc(recipe_text)}</pre>
<p class="muted">Regenerate with <code>edgekit report {esc(run_dir)}</code>.</p>
</body></html>
"""
