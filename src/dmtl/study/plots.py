"""Plots of a study, drawn off-screen with matplotlib's Agg canvas (no display, no pyplot state).

* :func:`plot_metric_per_variant`: one panel per task, bars per variant
  (mean over seeds, error bar = sample std, dots = single seeds, dashed line =
  single-task mean);
* :func:`plot_learning_curves`: each loss term over training steps, one panel
  per term, one line per run, read from Lightning ``CSVLogger`` ``metrics.csv``;
* :func:`plot_relatedness`: a heat map of a task-relatedness table.

Every function writes a PNG and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from dmtl.study.report import cell
from dmtl.study.results import BASELINE, StudyResults

DPI = 120
_SUFFIXES = ("_step", "_epoch")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _grid(fig: Figure, n: int, max_cols: int = 3) -> list[Axes]:
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return flat[:n]


# --------------------------------------------------------------------------- metric per variant


def _task_metrics(results: StudyResults, task: str, which: str) -> list[str]:
    primary = f"{task}/{results.tasks[task].primary_metric}"
    if which == "primary":
        return [primary]
    names = {primary}
    for run in results.runs:
        if run.status == "done" and (run.task is None or run.task == task):
            names |= {
                m
                for m in run.metrics
                if m.startswith(f"{task}/") and m.count("/") == 1 and m != f"{task}/num_labelled"
            }
    return [primary, *sorted(names - {primary})]


def plot_metric_per_variant(
    results: StudyResults,
    path: str | Path,
    metrics: Literal["primary", "summary"] = "primary",
) -> Path:
    """Grouped bars, one panel per task: mean over seeds per variant, error bar = sample std.

    ``metrics="summary"`` adds each task's other scalar metrics (e.g. ``f1_macro``,
    ``accuracy``) as more groups; per-class/per-label metrics are never drawn.
    Black dots are the single seeds; the dashed line is the single-task mean.
    """
    tasks = list(results.tasks)
    variants = list(results.variants)
    groups = {t: _task_metrics(results, t, metrics) for t in tasks}
    width_per_panel = max(
        3.5, 0.45 * len(variants) * max((len(g) for g in groups.values()), default=1) + 1.5
    )
    cols = max(1, min(len(tasks), 3))
    rows = max(1, math.ceil(len(tasks) / cols))
    fig = _figure(width_per_panel * cols, 3.6 * rows + 0.6)
    axes = _grid(fig, len(tasks))
    colors = [f"C{i % 10}" for i in range(len(variants))]
    bar_w = 0.8 / max(1, len(variants))
    for ax, task in zip(axes, tasks, strict=True):
        lo, hi = math.inf, -math.inf
        for g, metric in enumerate(groups[task]):
            for i, variant in enumerate(variants):
                c = cell(results, variant, metric)
                x = g - 0.4 + bar_w * (i + 0.5)
                if c.mean is None:
                    ax.text(
                        x,
                        0.0,
                        "n/a",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        rotation=90,
                        transform=ax.get_xaxis_transform(),
                    )
                    continue
                std = c.std or 0.0
                ax.bar(
                    x,
                    c.mean,
                    bar_w * 0.95,
                    yerr=std,
                    color=colors[i],
                    capsize=3,
                    label=variant if (g == 0 and task == tasks[0]) else None,
                )
                ax.scatter([x] * c.n, c.values, s=8, color="black", zorder=3)
                lo = min(lo, c.mean - std, *c.values)
                hi = max(hi, c.mean + std, *c.values)
            base = cell(results, BASELINE, metric).mean
            if base is not None and BASELINE in variants:
                ax.hlines(base, g - 0.45, g + 0.45, colors="0.3", linestyles="dashed", linewidth=1)
        ax.set_xticks(range(len(groups[task])))
        ax.set_xticklabels([m.split("/", 1)[1] for m in groups[task]])
        ax.set_title(task)
        ax.grid(axis="y", alpha=0.3)
        if math.isfinite(lo):
            # Zoom on the differences (often in the third decimal); keep [0, 1] metrics in range.
            pad = max(0.02, 0.15 * (hi - lo))
            ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1.0 else hi + pad)
    handles, labels = axes[0].get_legend_handles_labels() if axes else ([], [])
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 5),
            fontsize=8,
            frameon=False,
        )
    fig.suptitle(f"{results.study}: mean ± std over seeds (dashed: single-task)", fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------- learning curves


def _term_order(term: str) -> tuple[int, str]:
    ranks = {"train/loss": 0}
    for i, prefix in enumerate(("train/sup/", "train/ca/", "train/dm/"), start=1):
        if term.startswith(prefix):
            return (i, term)
    if term in ranks:
        return (ranks[term], term)
    return (4 if term.startswith("train/") else 5, term)


def read_loss_curves(path: str | Path) -> dict[str, pd.Series]:
    """Loss terms of a Lightning ``metrics.csv``: ``{term: values indexed by step}``.

    Terms are the ``train/*`` columns (``train/loss``, ``train/sup/<t>``,
    ``train/ca/<a>-><b>``, ``train/dm/<a>-><b>``) and ``val/loss``. Lightning
    writes one sparse row per logging call (NaN elsewhere); each term keeps
    its non-NaN rows, sorted by ``step``, duplicated steps averaged. Where a
    term is logged both per step and per epoch (``_step``/``_epoch`` suffixes)
    the per-step series is used, under the bare name.
    """
    frame = pd.read_csv(path)
    steps = (
        pd.to_numeric(frame["step"], errors="coerce")
        if "step" in frame.columns
        else pd.Series(np.arange(len(frame), dtype=float))
    )
    candidates: dict[str, dict[str, str]] = {}
    for col in map(str, frame.columns):
        if not (col.startswith("train/") or col.startswith("val/loss")):
            continue
        base, kind = col, ""
        for suffix in _SUFFIXES:
            if col.endswith(suffix):
                base, kind = col[: -len(suffix)], suffix
        if base.startswith("val/") and base != "val/loss":
            continue
        candidates.setdefault(base, {})[kind] = col
    curves: dict[str, pd.Series] = {}
    for base, kinds in candidates.items():
        col = kinds.get("_step") or kinds.get("") or kinds["_epoch"]
        values = pd.to_numeric(frame[col], errors="coerce")
        keep = values.notna() & steps.notna()
        series = pd.Series(
            values[keep].to_numpy(dtype=float), index=steps[keep].to_numpy(dtype=int)
        )
        series = series.groupby(level=0).mean().sort_index()
        if len(series):
            series.index.name = "step"
            series.name = base
            curves[base] = series
    return {k: curves[k] for k in sorted(curves, key=_term_order)}


def plot_learning_curves(
    metrics_csv_paths: Mapping[str, str | Path],
    path: str | Path,
    *,
    terms: Sequence[str] | None = None,
    smooth: int = 1,
    logy: bool = False,
) -> Path:
    """Each loss term over steps: one panel per term, one line per run label.

    ``terms`` restricts/orders the panels (default: every term found, see
    :func:`read_loss_curves`); ``smooth > 1`` draws a trailing moving average
    over that many logged points. Raises ``ValueError`` when no term is found.
    """
    runs = {label: read_loss_curves(p) for label, p in metrics_csv_paths.items()}
    found = {t for curves in runs.values() for t in curves}
    names = list(terms) if terms is not None else sorted(found, key=_term_order)
    names = [t for t in names if t in found]
    if not names:
        raise ValueError("no loss terms found in the given metrics.csv files")
    cols = max(1, min(len(names), 3))
    rows = math.ceil(len(names) / cols)
    fig = _figure(4.2 * cols, 3.0 * rows + 0.6)
    axes = _grid(fig, len(names))
    colors = {label: f"C{i % 10}" for i, label in enumerate(runs)}
    for ax, term in zip(axes, names, strict=True):
        for label, curves in runs.items():
            if term not in curves:
                continue
            series = curves[term]
            if smooth > 1:
                series = series.rolling(smooth, min_periods=1).mean()
            marker = "o" if len(series) < 30 else None
            ax.plot(
                series.index.to_numpy(),
                series.to_numpy(),
                label=label,
                color=colors[label],
                linewidth=1.2,
                marker=marker,
                markersize=3,
            )
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if logy:
            ax.set_yscale("log")
    handles: dict[str, Artist] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="outside lower center",
        ncols=min(len(handles), 4),
        fontsize=8,
        frameon=False,
    )
    return _save(fig, path)


# --------------------------------------------------------------------------- relatedness


MAX_TICKS = 120
"""Names shown per heat-map axis; larger tables label an evenly spaced subset."""


def _tick_positions(n: int) -> list[int]:
    if n <= MAX_TICKS:
        return list(range(n))
    return sorted({round(k * (n - 1) / (MAX_TICKS - 1)) for k in range(MAX_TICKS)})


def plot_relatedness(
    table: ArrayLike,
    row_names: Sequence[str],
    col_names: Sequence[str],
    path: str | Path,
    title: str = "",
    *,
    cmap: str = "viridis",
    annotate_max: int = 20,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """Heat map of a 2-D table (e.g. ``p(label | class)``), rows x columns as given.

    Cell values are written in the cells when both sides are ``<= annotate_max``;
    larger tables get smaller, rotated tick labels, and beyond ``MAX_TICKS`` names an axis
    labels an evenly spaced subset.
    NaN cells are left blank.
    """
    data = np.asarray(table, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"relatedness table must be 2-D, got shape {data.shape}")
    n_rows, n_cols = data.shape
    if len(row_names) != n_rows or len(col_names) != n_cols:
        raise ValueError(
            f"table shape {data.shape} does not match {len(row_names)} row and "
            f"{len(col_names)} column names"
        )
    annotate = n_rows <= annotate_max and n_cols <= annotate_max
    longest_row = max((len(str(n)) for n in row_names), default=1)
    longest_col = max((len(str(n)) for n in col_names), default=1)
    cell_in = 0.45 if annotate else 0.22
    fontsize = 8.0 if max(n_rows, n_cols) <= 40 else 6.0
    width = min(40.0, 1.8 + 0.07 * longest_row + cell_in * n_cols)
    height = min(40.0, 1.2 + 0.07 * longest_col + cell_in * n_rows + (0.3 if title else 0.0))
    fig = _figure(max(3.5, width), max(2.5, height))
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(data),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        aspect="auto",
        interpolation="nearest",
    )
    fig.colorbar(image, ax=ax, shrink=0.8, fraction=0.05)
    rotate = 90 if (n_cols > 8 or longest_col > 6) else 0
    # Beyond MAX_TICKS names per axis, label an evenly spaced subset (10,177 identities
    # cannot all be read, and drawing them takes minutes).
    cols = _tick_positions(n_cols)
    rows = _tick_positions(n_rows)
    ax.set_xticks(cols)
    ax.set_yticks(rows)
    ax.set_xticklabels([str(col_names[j]) for j in cols], rotation=rotate, fontsize=fontsize)
    ax.set_yticklabels([str(row_names[i]) for i in rows], fontsize=fontsize)
    ax.tick_params(length=2)
    if title:
        ax.set_title(title, fontsize=10)
    if annotate:
        finite = data[np.isfinite(data)]
        lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
        hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
        for i in range(n_rows):
            for j in range(n_cols):
                v = data[i, j]
                if not np.isfinite(v):
                    continue
                bright = (v - lo) / (hi - lo) > 0.6 if hi > lo else False
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if bright else "white",
                )
    return _save(fig, path)


__all__ = [
    "plot_learning_curves",
    "plot_metric_per_variant",
    "plot_relatedness",
    "read_loss_curves",
]
