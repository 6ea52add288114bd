"""Plumbing shared by the report's figures: the inspectable :class:`FigureData`, figure creation
without pyplot, run ordering / colours / markers, and a deterministic label placer.

No pyplot: figures are bare ``matplotlib.figure.Figure`` objects on an Agg canvas, so importing
the report in a notebook leaves the notebook's backend alone.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from besa_common.fileio import atomic_write_bytes
from reports.fmt import number

METHOD_ORDER = ["dense", "magnitude", "wanda", "sparsegpt", "owl", "besa"]
METHOD_COLORS = {"dense": "#444444", "magnitude": "#8c564b", "wanda": "#1f77b4", "sparsegpt": "#2ca02c", "owl": "#9467bd", "besa": "#d62728"}
EXPERIMENT_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
BOUND_COLORS = {"memory": "#1f77b4", "compute": "#ff7f0e"}
FIGURE_FORMATS = ("svg", "pdf", "png")


class NoData(Exception):
    """The inputs have nothing this figure can show; the message says why (one line)."""


@dataclass
class FigureData:
    """One drawn figure and the data it shows, for tests and notebooks to inspect.

    ``panels`` maps a panel key (e.g. ``"decode"``, a run label) to the arrays and limits that
    panel plots; ``flags`` lists what the reader must not miss (a dense run that is not 1.0×, a
    point above a roof); ``meta`` holds figure-wide facts (shared colour limits, uniform runs).
    In a notebook the object displays as its PNG.
    """

    fig_id: str
    title: str
    figure: Any
    caption: str
    panels: dict[str, dict[str, Any]] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self, fmt: str = "png", dpi: int = 110) -> bytes:
        """The figure as ``fmt`` (png, svg, pdf) bytes, cropped to its content."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_metadata(fmt))
        return buf.getvalue()

    def _repr_png_(self) -> bytes:
        return self.to_bytes("png")


def _metadata(fmt: str) -> dict[str, Any] | None:
    """No creation date in SVG/PDF, so the same data gives the same file bytes."""
    if fmt == "svg":
        return {"Date": None}
    if fmt == "pdf":
        return {"CreationDate": None}
    return None


def new_figure(nrows: int, ncols: int, width: float, height: float, **kw):
    """A bare Figure on an Agg canvas with an ``nrows × ncols`` grid of axes (always 2-D)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def plain_log(ax, which: str = "xy") -> None:
    """Tick labels of log axes as plain readable numbers (``20``, ``300``), not ``2×10^1``."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: number(v, 3) if v > 0 else "")
    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(FuncFormatter(_minor_label))


def _minor_label(v: float, _pos=None) -> str:
    """Label the minor log ticks at 2, 3 and 5 × a power of ten only (no clutter)."""
    if v <= 0:
        return ""
    mant = v / 10 ** math.floor(math.log10(v))
    return number(v, 3) if round(mant) in (2, 3, 5) and abs(mant - round(mant)) < 1e-6 else ""


def color(method: Any) -> str:
    return METHOD_COLORS.get(str(method), "#17becf")


def marker(pattern: Any) -> str:
    """Marker by sparsity pattern: dense ◆, unstructured ●, N:M ■, anything else ▲."""
    p = str(pattern)
    if p == "dense":
        return "D"
    if p in ("unstructured", "nan", "None", ""):
        return "o"
    if ":" in p:
        return "s"
    return "^"


def order_runs(frame: pd.DataFrame) -> list[str]:
    """Run labels in reading order: experiment, dense first, then methods in pipeline order, sparsity, pattern."""
    cols = [c for c in ("label", "experiment", "method", "sparsity", "pattern") if c in frame.columns]
    first = frame[cols].drop_duplicates("label")

    def key(r):
        m = str(r.get("method"))
        sp = r.get("sparsity")
        return (
            str(r.get("experiment", "")),
            METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER),
            m,
            float(sp) if pd.notna(sp) else -1.0,
            str(r.get("pattern")),
            str(r["label"]),
        )

    return [r["label"] for r in sorted(first.to_dict("records"), key=key)]


def pick(values: Sequence[Any], prefer: Any = None) -> Any:
    vals = [v for v in pd.unique(pd.Series(list(values)).dropna())]
    if not vals:
        return None
    return prefer if prefer in vals else vals[0]


# --- deterministic label placement -------------------------------------------------------------

# Offsets tried for each label, nearest first: 8 directions at growing distances (points).
_DIRS = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
_RADII = [5, 10, 16, 24, 34, 46]


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(
    ax, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str], fontsize: float = 7.0, point_radius_pt: float = 4.0
) -> list[tuple[float, float, float, float]]:
    """Annotate each point with its text so that no two labels overlap each other or a marker.

    Deterministic: points are taken in a fixed order and each tries the offsets of :data:`_DIRS` ×
    :data:`_RADII` nearest-first, keeping the first whose box stays inside the axes and hits
    nothing already placed; if none is free, the candidate with the least overlap wins.  Axis
    limits must be final before calling.  Returns the label boxes in display pixels (x0, y0, x1, y1),
    which the tests check for overlaps.  Labels further than 12 pt get a thin leader line.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    frame = ax.get_window_extent(renderer)
    box_ax = (frame.x0, frame.y0, frame.x1, frame.y1)
    pts = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    r = point_radius_pt * px_per_pt
    occupied = [(px - r, py - r, px + r, py + r) for px, py in pts]
    sizes = []
    for t in texts:
        probe = ax.text(0, 0, t, fontsize=fontsize)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        sizes.append((ext.width, ext.height))
    placed: list[tuple[float, float, float, float]] = [None] * len(texts)  # type: ignore[list-item]
    order = sorted(range(len(texts)), key=lambda i: (-pts[i][1], pts[i][0], texts[i]))
    for i in order:
        (px, py), (w, h) = pts[i], sizes[i]
        best = None
        for rad in _RADII:
            for dx, dy in _DIRS:
                norm = math.hypot(dx, dy)
                ox, oy = dx / norm * rad * px_per_pt, dy / norm * rad * px_per_pt
                cx, cy = px + ox, py + oy
                x0 = cx if dx > 0 else cx - w if dx < 0 else cx - w / 2
                y0 = cy if dy > 0 else cy - h if dy < 0 else cy - h / 2
                box = (x0, y0, x0 + w, y0 + h)
                inside = box[0] >= box_ax[0] and box[2] <= box_ax[2] and box[1] >= box_ax[1] and box[3] <= box_ax[3]
                cost = sum(_overlap(box, o) for o in occupied) + (0.0 if inside else 1e6)
                if best is None or cost < best[0]:
                    best = (cost, box, dx, dy, rad)
                if cost == 0.0:
                    break
            if best[0] == 0.0:
                break
        _, box, dx, dy, rad = best
        norm = math.hypot(dx, dy)
        ha = "left" if dx > 0 else "right" if dx < 0 else "center"
        va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
        ann = ax.annotate(
            texts[i],
            (xs[i], ys[i]),
            xytext=(dx / norm * rad, dy / norm * rad),
            textcoords="offset points",
            fontsize=fontsize,
            ha=ha,
            va=va,
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#888888", "shrinkA": 0, "shrinkB": 3} if rad > 12 else None,
        )
        ann.set_in_layout(False)
        occupied.append(box)
        placed[i] = box
    return placed


def boxes_overlap(boxes: Sequence[tuple[float, float, float, float]]) -> bool:
    """Whether any two boxes intersect (a shared edge does not count)."""
    return any(_overlap(a, b) > 1e-6 for k, a in enumerate(boxes) for b in boxes[k + 1 :])


def write_figure(fd: FigureData, folder: Path, fmt: str) -> Path:
    """Write ``folder/<fig_id>.<fmt>`` atomically and return the path."""
    path = Path(folder) / f"{fd.fig_id}.{fmt}"
    atomic_write_bytes(path, fd.to_bytes(fmt))
    return path
