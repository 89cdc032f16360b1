"""report.html's accuracy-vs-latency plot: every row is labelled, and no two labels overlap, even
when the rows share an accuracy and lie close in latency (the boxes as matplotlib draws them)."""

from __future__ import annotations

import copy
import itertools

import pytest

from edgekit.report import html
from edgekit.report.labels import settle, text_box


def _boxes(results: dict):
    fig = html.scatter_figure(results, html.pareto_front(results))
    renderer = settle(fig)
    ax = fig.axes[0]
    return fig, {note.get_text(): text_box(note, renderer) for note in ax.texts}


@pytest.mark.parametrize("crowd", [False, True])
def test_no_two_labels_overlap(tiny_run, crowd):
    results = copy.deepcopy(tiny_run.results)
    if crowd:  # every row at one accuracy, each 1% slower than the one before: a pile of labels
        for i, row in enumerate(r for r in results["rows"] if r.get("latency_ms")):
            row["metrics"]["accuracy"] = 0.95
            row["latency_ms"].update(p50=0.010 * 1.01 ** i, p90=0.011 * 1.01 ** i)
    fig, boxes = _boxes(results)
    measured = {row["id"] for row in results["rows"] if row["status"] == "ok" and row.get("latency_ms")}
    assert set(boxes) == measured
    clashes = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2) if box_a.overlaps(box_b)]
    assert clashes == []
    for name, box in boxes.items():  # and every label is on the picture
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1), name
