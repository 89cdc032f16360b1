"""Point labels on a plot that never overlap one another (report.html's accuracy-vs-latency plot).

Rows of a build often share an accuracy and lie close in latency, so fixed offsets (alternating
above and below) still stacked labels on each other. ``place`` puts each label, in the order
given, at the first of a list of positions around its point whose box (as drawn, in display
pixels) meets no label placed before it and no point's marker; a label with no free position
nearby goes farther out, with a thin line back to its point.
"""

from __future__ import annotations

#: offsets (points) of a label from its point, tried in order: right above, right below, left
#: above, left below, then straight above and below
NEAR = ((6, 6), (6, -14), (-6, 6), (-6, -14), (0, 12), (0, -20))
#: how far out (points, per step) a label goes when no NEAR position is free, and how many steps
STEP, STEPS = 12, 40


def place(ax, points: list[tuple[float, float]], texts: list[str], fontsize: float = 8) -> list:
    """Annotate ``ax`` at each of ``points`` (data coordinates) with the matching text, no two
    labels overlapping; returns the annotations. The figure's layout must be final (the axes'
    limits, scales and position): call after everything else is drawn once (``settle``)."""
    renderer = settle(ax.figure)
    taken = [_marker_box(ax, point) for point in points]
    legend = ax.get_legend()
    if legend is not None:  # where "best" put it stays put, and labels keep off it
        box = legend.get_window_extent(renderer)
        legend.set_loc(tuple(ax.transAxes.inverted().transform((box.x0, box.y0))))
        taken.append(box)
    frame = ax.figure.bbox
    placed = []
    for point, text in zip(points, texts):
        for offset in _offsets():
            left = offset[0] < 0
            note = ax.annotate(text, point, textcoords="offset points", xytext=offset, fontsize=fontsize,
                               ha="right" if left else "left" if offset[0] else "center", va="bottom",
                               arrowprops=_line(offset))
            note.set_in_layout(False)  # the layout is final: labels must not move the axes
            box = text_box(note, renderer)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            if (inside and not any(box.overlaps(other) for other in taken)) or offset == _last():
                taken.append(box)
                placed.append(note)
                break
            note.remove()
    return placed


def text_box(note, renderer):
    """The box a label's text takes on screen, a little margin around it (its line to the point,
    which an annotation's own extent includes, left out)."""
    from matplotlib.text import Text

    note.update_positions(renderer)  # where the offset puts the text (an annotation's own extent does this)
    return Text.get_window_extent(note, renderer).expanded(1.05, 1.15)


def settle(fig):
    """Draw ``fig`` once (its constrained layout fixes the axes' position) and return the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    fig.set_layout_engine("none")  # keep the positions the draw settled on
    return canvas.get_renderer()


def _offsets():
    yield from NEAR
    for step in range(1, STEPS + 1):  # farther out, alternating above and below, to the right
        yield (6 + step * 4, 6 + step * STEP)
        yield (6 + step * 4, -14 - step * STEP)


def _last():
    return (6 + STEPS * 4, -14 - STEPS * STEP)


def _line(offset) -> dict | None:
    """A thin line back to the point for a label placed away from it."""
    if offset in NEAR:
        return None
    return {"arrowstyle": "-", "color": "0.5", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 4}


def _marker_box(ax, point):
    """The box a point's marker takes on screen (about 9 points across)."""
    from matplotlib.transforms import Bbox

    x, y = ax.transData.transform(point)
    half = 4.5 * ax.figure.dpi / 72
    return Bbox.from_extents(x - half, y - half, x + half, y + half)
