"""The console's plots as SVG, drawn on the server with matplotlib (no pyplot state, so concurrent
requests do not share a figure): the experiment forest plot and line charts over time or rounds."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure

INK, MUTED, ACCENT, CUPED = "#1f2933", "#7b8794", "#2f6fdf", "#d9480f"


@dataclass(frozen=True)
class Interval:
    """One row of a forest plot: an arm's difference against the control and its 95 % interval."""

    label: str
    difference: float
    low: float
    high: float
    significant: bool


def _svg(figure: Figure, *, left: float) -> str:
    """``figure`` as SVG with text kept as text (a third of the time and the size of glyph paths),
    margins fixed in inches (a tight bounding box would draw it twice)."""
    width, height = figure.get_size_inches()
    figure.subplots_adjust(left=left / width, right=1 - 0.2 / width, bottom=0.6 / height, top=1 - 0.4 / height)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg")
    return buffer.getvalue()


def forest_plot(title: str, plain: Sequence[Interval], cuped: Sequence[Interval] = ()) -> str:
    """Each arm's difference with its interval (CUPED's beside it, when given), a line at no effect."""
    rows = max(len(plain), 1)
    figure = Figure(figsize=(6.4, 1.3 + 0.45 * rows * (2 if cuped else 1)))
    axes = figure.add_subplot()
    series = [(plain, ACCENT, "unadjusted", 0.0)] + ([(cuped, CUPED, "CUPED", -0.3)] if cuped else [])
    for intervals, colour, name, offset in series:
        for row, interval in enumerate(intervals):
            y = -row + offset
            axes.plot([interval.low, interval.high], [y, y], color=colour, linewidth=2)
            axes.plot([interval.difference], [y], marker="o" if interval.significant else "D", color=colour,
                      markersize=7, markerfacecolor=colour if interval.significant else "white",
                      label=name if row == 0 else None)
    axes.axvline(0.0, color=MUTED, linestyle="--", linewidth=1)
    axes.set_yticks([-row for row in range(len(plain))], [interval.label for interval in plain])
    axes.set_ylim(-rows + 0.4, 0.6)
    axes.set_xlabel("difference against the control (95 % interval; filled: significant after Holm)")
    axes.set_title(title, color=INK, fontsize=11)
    if cuped:
        axes.legend(loc="lower right", fontsize=8, frameon=False)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return _svg(figure, left=0.15 + 0.09 * max((len(interval.label) for interval in plain), default=4))


def line_chart(title: str, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, x_label: str,
               y_label: str, x_limits: tuple[float, float] | None = None) -> str:
    """One line per name of ``series`` (x values, y values), over ``x_limits`` when given."""
    figure = Figure(figsize=(6.4, 3.0))
    axes = figure.add_subplot()
    for name, (xs, ys) in series.items():
        axes.plot(list(xs), list(ys), marker="o" if len(xs) < 30 else None, markersize=4, label=name)
    if x_limits is not None:
        axes.set_xlim(*x_limits)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title, color=INK, fontsize=11)
    if len(series) > 1:
        axes.legend(fontsize=8, frameon=False)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return _svg(figure, left=0.8)
