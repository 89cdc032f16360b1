"""What a search writes for people: the trials table (terminal and report.md) and report.html
with the Pareto front of each target plotted (plots/front_<target>.png)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from edgekit.report.cells import human_ms, human_size

COLUMNS = ("trial", "variant and settings", "status", "metric", "drop", "size", "p50 [95%]", "notes")


def table_rows(document: dict) -> list[list[str]]:
    """One line per trial, on the search's target: the cells of ``COLUMNS``."""
    search = document["search"]
    target, pick = search["target"], (search["pick"] or {}).get("trial")
    front = set(search["front"].get(target, []))
    out = []
    for entry in search["trials"]:
        row = entry["rows"].get(target) or {}
        seen = row or entry.get("prepared") or entry.get("probe") or {}
        metric, drop = seen.get("metric"), seen.get("drop")
        lat, ci = row.get("latency_ms") or {}, row.get("p50_ci95_ms")
        p50 = f"{human_ms(lat['p50'])}" + (f" [{human_ms(ci[0])}-{human_ms(ci[1])}]" if ci else "") if lat.get("p50") else "-"
        marks = ("pick " if entry["id"] == pick else "") + ("front" if entry["id"] in front else "")
        notes = entry.get("reason") or ("; ".join(entry.get("breaks") or []) or ("meets the constraints" if entry["meets"] else ""))
        if entry.get("probe") and entry["status"] != "stopped":
            notes = f"short fine-tune: drop {entry['probe']['drop']:.4g}; " + notes
        size = row.get("size_bytes") or (entry.get("prepared") or {}).get("size_bytes")
        out.append([entry["id"] + (f" ({marks.strip()})" if marks else ""), entry["label"], entry["status"],
                    "-" if metric is None else f"{metric:.4f}", "-" if drop is None else f"{drop + 0.0:+.4f}",
                    human_size(size) if size else "-", p50, notes])
    return out


def pick_line(document: dict) -> str:
    """The pick and its margin over the runner-up, in one line."""
    search = document["search"]
    pick = search["pick"]
    if pick is None:
        return (f"no trial meets the constraints on {search['target']} ({_constraints(search)}): "
                "widen the space or the budget")
    line = f"pick: {pick['row']} (trial {pick['trial']}), {search['objective']} {_value(search['objective'], pick['value'])}"
    if pick.get("runner_up"):
        margin = f"{pick['margin']:.3g}x" if pick.get("margin") else "?"
        ci = pick.get("margin_ci95")
        verdict = {True: "significant", False: "not significant", None: "no verdict"}[pick.get("significant")]
        line += (f"; beats the runner-up {pick['runner_up_row']} (trial {pick['runner_up']}) by {margin}"
                 + (f" [{ci[0]:.3g}-{ci[1]:.3g}]" if ci else "") + f": {verdict}")
    else:
        line += f"; {pick.get('margin_note')}"
    return line + f"; recipe: {pick['recipe']}"


def _value(objective: str, value) -> str:
    return human_ms(value) if objective == "p50" else human_size(value) if value is not None else "-"


def _constraints(search: dict) -> str:
    shown = [f"{k} {v}" for k, v in search["constraints"].items() if v is not None]
    return ", ".join(shown) or "none"


def markdown(document: dict) -> str:
    search = document["search"]
    counts = ", ".join(f"{n} {s}" for s, n in search["counts"].items())
    lines = [f"# edgekit search: {document['recipe']['name']}", "",
             f"- objective: lowest {search['objective']} on {search['target']}; constraints: {_constraints(search)}",
             f"- strategy: {search['strategy']}, {len(search['trials'])} trial(s): {counts}"
             + (f"; {search['invalid_points']} point(s) of the grid build nothing" if search["invalid_points"] else ""),
             f"- {pick_line(document)}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table_rows(document)]
    lines += ["", "Pareto front (drop, p50 and size at once) per target: "
              + "; ".join(f"{t}: {', '.join(ids) or '-'}" for t, ids in search["front"].items()), "",
              "Each trial is a build of its own recipe (trials/<id>.yaml, run directory trials/<id>/); "
              "`edgekit build` of the pick's recipe reproduces its row. stopped: its short fine-tune was past the "
              "budget; rejected: its metric or size was past the budget after converting, so it was not timed."]
    return "\n".join(lines) + "\n"


def _front_plot(document: dict, target: str) -> bytes | None:
    from edgekit.report.html import _figure, _png

    search, metric = document["search"], document["primary_metric"]
    points = [(e, e["rows"][target]) for e in search["trials"]
              if (e["rows"].get(target) or {}).get("status") == "ok" and (e["rows"][target].get("latency_ms") or {}).get("p50")
              and e["rows"][target].get("metric") is not None]
    if not points:
        return None
    front, pick = set(search["front"].get(target, [])), (search["pick"] or {}).get("trial")
    fig = _figure(10, 5.5)
    ax = fig.add_subplot()
    largest = max(row["size_bytes"] or 1 for _, row in points)
    for entry, row in points:
        x, y = row["latency_ms"]["p50"], row["metric"]
        ci = row.get("p50_ci95_ms")
        colour = "C2" if entry["meets"] else "C7"
        ax.errorbar(x, y, xerr=[[x - ci[0]], [ci[1] - x]] if ci else None, fmt="none", ecolor=colour, alpha=0.6)
        ax.scatter(x, y, s=40 + 260 * (row["size_bytes"] or 1) / largest, color=colour, alpha=0.7,
                   edgecolors="black" if entry["id"] in front else "none", linewidths=1.5, zorder=3)
        ax.annotate(f"{row['id'].split('@')[0]} ({entry['id'][:6]})" + (" pick" if entry["id"] == pick else ""), (x, y),
                    textcoords="offset points", xytext=(6, 6), fontsize=8, fontweight="bold" if entry["id"] == pick else "normal")
    base = next((r for r in document["rows"] if r["id"] == document["baseline"]), None)
    if base and (base.get("metrics") or {}).get(metric) is not None and search["constraints"].get("max_metric_drop") is not None:
        sign = -1 if document.get("higher_is_better", True) else 1
        ax.axhline(base["metrics"][metric] + sign * search["constraints"]["max_metric_drop"], color="C3",
                   linestyle="--", linewidth=1, label="metric budget")
        ax.legend(fontsize=8, loc="best")
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.15)
    ax.set_xlabel("p50 latency, ms (log scale; bar: 95% interval)")
    ax.set_ylabel(metric)
    ax.set_title(f"trials on {target}: green meets the constraints, outlined on the Pareto front, area ~ size")
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)


def write(document: dict, out_dir: Path) -> Path:
    """report.md, plots/front_<target>.png and report.html of a search."""
    from edgekit.report.html import _CSS, PLOTS_DIR, REPORT_NAME

    out_dir = Path(out_dir)
    (out_dir / "report.md").write_text(markdown(document))
    (out_dir / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    figures = []
    for target in document["search"]["front"]:
        png = _front_plot(document, target)
        if png is None:
            continue
        name = f"front_{''.join(c if c.isalnum() or c in '-_' else '_' for c in target)}"
        (out_dir / PLOTS_DIR / f"{name}.png").write_bytes(png)
        figures.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,"
                       f"{base64.b64encode(png).decode('ascii')}'><figcaption>{html.escape(target)} (also "
                       f"{PLOTS_DIR}/{name}.png)</figcaption></figure>")
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table_rows(document))
    search = document["search"]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgekit search: {esc(document['recipe']['name'])}</title>
<style>{_CSS}</style></head><body>
<h1>edgekit search: {esc(document['recipe']['name'])}</h1>
<ul class="meta"><li>objective: lowest {esc(search['objective'])} on {esc(search['target'])}; constraints:
{esc(_constraints(search))}</li><li>strategy: {esc(search['strategy'])}, {len(search['trials'])} trial(s)</li>
<li id="pick">{esc(pick_line(document))}</li></ul>
<h2>Pareto front</h2>
{''.join(figures) or "<p class='muted'>No trial was timed: nothing to plot.</p>"}
<h2>Trials</h2>
<table id="trials"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<p class="muted">Each trial is a build of its own recipe (trials/&lt;id&gt;.yaml, run directory trials/&lt;id&gt;/,
with its own report.html); <code>edgekit build</code> of the pick's recipe reproduces its row.</p>
</body></html>
"""
    path = out_dir / REPORT_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
