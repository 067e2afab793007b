"""The result chart: a job's training loss and mAP50 (and mAP50-95) over its epochs or iterations, as PNG bytes.

Drawn from the record's loss and metric histories with matplotlib's object API on an Agg canvas: no pyplot, no
display, no global backend. matplotlib is imported only when a chart is drawn, so the notifier's cold start does
not pay for it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from spotter.store import JobRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH_INCHES, HEIGHT_INCHES, DPI = 9.0, 5.5, 100
LOSS_COLOR = "#d62728"
MAP50_COLOR = "#1f77b4"
MAP50_95_COLOR = "#2ca02c"
RESUME_COLOR = "#7f7f7f"
# A loss that falls over more than this factor is drawn on a log scale (early losses dwarf the rest).
LOG_SCALE_RATIO = 20.0

Point = tuple[int, float]


def loss_points(rec: JobRecord) -> list[Point]:
    return [(int(x), float(y)) for x, y in rec.loss_history]


def map_points(rec: JobRecord, key: str) -> list[Point]:
    """(epoch or iteration, score) of each evaluation that gave `key` (map50 or map50_95)."""
    out: list[Point] = []
    for m in rec.metric_history:
        value = getattr(m, key)
        if m.current is not None and value is not None:
            out.append((m.current, float(value)))
    return out


def segments(points: Sequence[Point]) -> list[list[Point]]:
    """The points in runs that move forward: a resumed attempt goes back to its checkpoint and trains again from
    there, and each run is drawn as its own line rather than zigzagging back."""
    runs: list[list[Point]] = []
    for point in points:
        if not runs or point[0] < runs[-1][-1][0]:
            runs.append([])
        runs[-1].append(point)
    return runs


def _plot(ax: Axes, points: Sequence[Point], color: str, label: str, *, marker: str | None = None) -> None:
    for i, run in enumerate(segments(points)):
        xs, ys = zip(*run, strict=True)
        ax.plot(xs, ys, color=color, linewidth=1.6, marker=marker, markersize=3, label=label if i == 0 else None)


def _resumes(rec: JobRecord) -> Iterable[tuple[int, int]]:
    """(epoch or iteration, attempt) where each later attempt resumed from a checkpoint."""
    for a in rec.attempts:
        if a.number > 1 and a.resumed_from is not None:
            yield a.resumed_from, a.number


def render(rec: JobRecord) -> bytes | None:
    """The chart as PNG bytes; None when the job has no loss and no mAP to draw."""
    loss = loss_points(rec)
    map50, map50_95 = map_points(rec, "map50"), map_points(rec, "map50_95")
    if not (loss or map50 or map50_95):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    rows = [kind for kind, points in (("loss", loss), ("map", map50 or map50_95)) if points]
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    unit = rec.spec.unit
    for ax, kind in zip(axes, rows, strict=True):
        if kind == "loss":
            _plot(ax, loss, LOSS_COLOR, "loss")
            ys = [y for _, y in loss]
            if min(ys) > 0 and max(ys) / min(ys) > LOG_SCALE_RATIO:
                ax.set_yscale("log")
            ax.set_ylabel("loss")
        else:
            _plot(ax, map50, MAP50_COLOR, "mAP50", marker="o")
            _plot(ax, map50_95, MAP50_95_COLOR, "mAP50-95", marker="o")
            best = rec.best
            if best is not None and best.map50 is not None and best.current is not None:
                ax.scatter([best.current], [best.map50], s=60, color=MAP50_COLOR, edgecolors="black", zorder=3)
                ax.annotate(
                    f"best {best.map50:.3f}",
                    (best.current, best.map50),
                    textcoords="offset points",
                    xytext=(6, -14),
                    fontsize=9,
                )
            top = max(y for _, y in (map50 + map50_95))
            ax.set_ylim(0, min(1.0, max(0.1, top * 1.15)))
            ax.set_ylabel("mAP")
        for x, attempt in _resumes(rec):
            ax.axvline(x, color=RESUME_COLOR, linestyle="--", linewidth=1)
            ax.annotate(
                f"attempt {attempt}",
                (x, 1),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color=RESUME_COLOR,
            )
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    axes[-1].set_xlabel(unit)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{rec.spec.dataset} · {rec.spec.model} — job {rec.job_id}", fontsize=11)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
