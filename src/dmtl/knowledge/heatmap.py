"""A heat map of a task-relatedness table, drawn off-screen with matplotlib (no pyplot state).

Used by ``dmtl relatedness show`` and by the study's report; it needs matplotlib
only, so drawing a table never imports the training or study layers.
:func:`new_figure` and :func:`save_png` are the two matplotlib steps every dmtl
plot shares (an Agg canvas, a PNG at :data:`DPI`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

DPI = 120
"""Resolution of every PNG dmtl draws."""

MAX_TICKS = 120
"""Names shown per heat-map axis; larger tables label an evenly spaced subset."""

ANNOTATE_MAX = 20
"""Cell values are written in the cells when both sides have at most this many entries."""


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches on an off-screen Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` (parent folders created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _tick_positions(n: int) -> list[int]:
    if n <= MAX_TICKS:
        return list(range(n))
    return sorted({round(k * (n - 1) / (MAX_TICKS - 1)) for k in range(MAX_TICKS)})


def _check_shape(data: np.ndarray, row_names: Sequence[str], col_names: Sequence[str]) -> None:
    if data.ndim != 2:
        raise ValueError(f"relatedness table must be 2-D, got shape {data.shape}")
    if len(row_names) != data.shape[0] or len(col_names) != data.shape[1]:
        raise ValueError(
            f"table shape {data.shape} does not match {len(row_names)} row and "
            f"{len(col_names)} column names"
        )


def plot_relatedness(
    table: ArrayLike,
    row_names: Sequence[str],
    col_names: Sequence[str],
    path: str | Path,
    title: str = "",
    *,
    row_label: str = "",
    col_label: str = "",
) -> Path:
    """Heat map of a 2-D table (e.g. ``R[c, j] = p(label j | class c)``), rows x columns as given;
    ``row_label``/``col_label`` name the axes (e.g. the source and the target task).

    The colour scale spans ``[0, 1]`` when every value lies in it (probabilities), else
    the values' range. Values are written in the cells when both sides are
    ``<= ANNOTATE_MAX``; larger tables get smaller, rotated tick labels, and beyond
    ``MAX_TICKS`` names an axis labels an evenly spaced subset (10,177 identities cannot
    all be read, and drawing them takes minutes). NaN cells are left blank. Raises
    ``ValueError`` when the table is not 2-D or the names do not match its shape.
    """
    data = np.asarray(table, dtype=float)
    _check_shape(data, row_names, col_names)
    n_rows, n_cols = data.shape
    annotate = n_rows <= ANNOTATE_MAX and n_cols <= ANNOTATE_MAX
    longest_row = max((len(str(n)) for n in row_names), default=1)
    longest_col = max((len(str(n)) for n in col_names), default=1)
    cell_in = 0.45 if annotate else 0.22
    fontsize = 8.0 if max(n_rows, n_cols) <= 40 else 6.0
    width = min(40.0, 1.8 + 0.07 * longest_row + cell_in * n_cols)
    height = min(40.0, 1.2 + 0.07 * longest_col + cell_in * n_rows + (0.3 if title else 0.0))
    fig = new_figure(max(3.5, width), max(2.5, height))
    ax = fig.add_subplot()
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo >= 0.0 and hi <= 1.0:  # probabilities: the colour scale is the whole [0, 1]
        lo, hi = 0.0, 1.0
    image = ax.imshow(
        np.ma.masked_invalid(data), cmap="viridis", aspect="auto", interpolation="nearest",
        vmin=lo, vmax=hi,
    )
    fig.colorbar(image, ax=ax, shrink=0.8, fraction=0.05)
    rotate = 90 if (n_cols > 8 or longest_col > 6) else 0
    cols, rows = _tick_positions(n_cols), _tick_positions(n_rows)
    ax.set_xticks(cols)
    ax.set_yticks(rows)
    ax.set_xticklabels([str(col_names[j]) for j in cols], rotation=rotate, fontsize=fontsize)
    ax.set_yticklabels([str(row_names[i]) for i in rows], fontsize=fontsize)
    ax.tick_params(length=2)
    if title:
        ax.set_title(title, fontsize=10)
    if row_label:
        ax.set_ylabel(row_label, fontsize=9)
    if col_label:
        ax.set_xlabel(col_label, fontsize=9)
    if annotate:
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                bright = hi > lo and (v - lo) / (hi - lo) > 0.6
                colour = "black" if bright else "white"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=colour)
    return save_png(fig, path)


__all__ = ["DPI", "new_figure", "plot_relatedness", "save_png"]
