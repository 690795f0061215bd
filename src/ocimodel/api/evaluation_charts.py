"""Charts of an evaluation history: a small text chart per metric for the terminal, and a
file (SVG or PNG) drawn with matplotlib, the optional extra ``ocimodel[plot]``.

Pure: they read an :class:`~ocimodel.api.evaluations.EvaluationHistory` and connect to
nothing. matplotlib is imported only by :func:`plot`, through its object API (a Figure
and the Agg canvas): no pyplot, no global backend switched under an application that
imports ocimodel."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from ocimodel.api.evaluations import EvaluationHistory, EvaluationRecord
from ocimodel.api.statements import parse_time
from ocimodel.errors import UsageError

PLOT_FORMATS = (".svg", ".png")
PLOT_EXTRA = "pip install 'ocimodel[plot]'"
_EIGHTHS = " ▁▂▃▄▅▆▇█"


def series(history: EvaluationHistory) -> dict[str, list[tuple[EvaluationRecord, float]]]:
    """Per metric name, its points in the history's order (oldest first)."""
    out: dict[str, list[tuple[EvaluationRecord, float]]] = {}
    for point in history.records:
        for metric in point.metrics:
            out.setdefault(metric.name, []).append((point, metric.value))
    return out


def text_chart(history: EvaluationHistory, *, height: int = 5, width: int = 60) -> list[str]:
    """A bar chart per metric, one column a point (the last ``width`` points), ``b`` under
    a baseline; lines of plain text."""
    lines: list[str] = []
    for name, points in series(history).items():
        shown = points[-width:]
        values = [v for _, v in shown]
        lo, hi = min(values), max(values)
        span = hi - lo
        levels = height * 8
        # The lowest value keeps a sliver of a bar: a point is never drawn as nothing.
        bars = [levels if span == 0 else 1 + round((v - lo) / span * (levels - 1)) for v in values]
        label = max(len(f"{hi:.4g}"), len(f"{lo:.4g}"))
        more = f", the last {len(shown)} of {len(points)} shown" if len(shown) < len(points) else ""
        lines.append(f"{name}: {len(points)} point{'s' if len(points) != 1 else ''}, first {points[0][1]:g}, "
                     f"last {points[-1][1]:g}, min {min(v for _, v in points):g}, max {max(v for _, v in points):g}{more}")
        for row in range(height):
            floor = (height - 1 - row) * 8
            cells = "".join(_EIGHTHS[max(0, min(8, bar - floor))] for bar in bars)
            axis = f"{hi:.4g}" if row == 0 else f"{lo:.4g}" if row == height - 1 else ""
            lines.append(f"  {axis:>{label}} |{cells}")
        marks = "".join("b" if p.baseline else " " for p, _ in shown)
        if marks.strip():
            lines.append(f"  {'':>{label}}  {marks}")
        first = next((p.time for p, _ in shown if p.time), "")
        last = next((p.time for p, _ in reversed(shown) if p.time), "")
        if first:
            lines.append(f"  {'':>{label}}  {first[:10]} .. {last[:10]}")
    return lines


def check_plot_path(path: str | os.PathLike[str]) -> None:
    """Refuse a plot file that is not .svg or .png, or a plot without matplotlib, before
    anything is read."""
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise UsageError(f"--plot {str(path)[:200]}: the file must end in .svg or .png", hint="e.g. --plot accuracy.svg")
    _matplotlib()


def plot(history: EvaluationHistory, path: str | os.PathLike[str]) -> Path:
    """Draw the history to ``path`` (.svg or .png): one panel per metric, value over time,
    a line per version; baselines as stars, records that are not trusted as hollow marks."""
    check_plot_path(path)
    figure_class, canvas_class = _matplotlib()
    groups = series(history)
    if not groups:
        raise UsageError(f"nothing to plot: {history.reference} has no record and no baseline metric")
    figure = figure_class(figsize=(8, 2.6 * len(groups)), layout="constrained")
    canvas_class(figure)
    first_record: dict[str, datetime] = {}
    for point in history.records:
        when = parse_time(point.time)
        if when is not None and not point.baseline and point.digest not in first_record:
            first_record[point.digest] = when
    for index, (name, points) in enumerate(groups.items(), start=1):
        axes = figure.add_subplot(len(groups), 1, index)
        by_version: dict[str, list[tuple[datetime, float, EvaluationRecord]]] = {}
        for point, value in points:
            when = parse_time(point.time) or first_record.get(point.digest)
            if when is None:
                continue  # a baseline with no push time and no record to stand beside
            by_version.setdefault(point.version or point.digest[:19], []).append((when, value, point))
        for version, rows in by_version.items():
            line = axes.plot([r[0] for r in rows], [r[1] for r in rows], label=version, linewidth=1.2)[0]
            color = line.get_color()
            for when, value, point in rows:
                if point.baseline:
                    axes.plot([when], [value], marker="*", markersize=11, color=color, linestyle="none")
                elif point.trust == "trusted":
                    axes.plot([when], [value], marker="o", color=color, linestyle="none")
                else:
                    axes.plot([when], [value], marker="o", markerfacecolor="none", color=color, linestyle="none")
        axes.set_ylabel(name)
        axes.grid(True, alpha=0.3)
        if by_version:
            axes.legend(loc="best", fontsize="small")
        if index == 1:
            axes.set_title(history.reference, fontsize="medium")
    figure.autofmt_xdate()
    target = Path(path)
    figure.savefig(target, format=target.suffix.lower()[1:], metadata=_metadata(target))
    return target


def _metadata(target: Path) -> dict:
    # No date in the file: the same history draws the same SVG.
    return {"Date": None} if target.suffix.lower() == ".svg" else {}


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plot needs matplotlib, which is not installed", hint=PLOT_EXTRA) from None
    return Figure, FigureCanvasAgg


__all__ = ["PLOT_EXTRA", "check_plot_path", "plot", "series", "text_chart"]
