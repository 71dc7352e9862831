"""Plots of a study, drawn off-screen with matplotlib's Agg canvas (no display, no pyplot state).

* :func:`plot_metric_per_variant`: one panel per task, bars per variant
  (mean over seeds, error bar = sample std, dots = single seeds, dashed line =
  single-task mean);
* :func:`plot_learning_curves`: each loss term over training steps, one panel
  per term, one line per run, read from Lightning ``CSVLogger`` ``metrics.csv``.

Every function writes a PNG and returns its path. The numbers come from
:mod:`dmtl.study.statistics`; a relatedness table's heat map is
:func:`dmtl.knowledge.heatmap.plot_relatedness`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dmtl.knowledge.heatmap import new_figure, save_png
from dmtl.study.results import BASELINE, StudyResults
from dmtl.study.statistics import cell

_SUFFIXES = ("_step", "_epoch")


def _grid(fig: Figure, n: int, max_cols: int = 3) -> list[Axes]:
    cols = max(1, min(n, max_cols))
    rows = max(1, math.ceil(n / cols))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return flat[:n]


# --------------------------------------------------------------------------- metric per variant


def _task_panel(ax: Axes, results: StudyResults, task: str, colors: list[str]) -> None:
    """One task's bars: mean per variant, error bar = sample std, dots = seeds."""
    metric = results.primary_metrics()[task]
    variants = list(results.variants)
    bar_w = 0.8 / max(1, len(variants))
    lo, hi = math.inf, -math.inf
    for i, variant in enumerate(variants):
        c = cell(results, variant, metric)
        x = -0.4 + bar_w * (i + 0.5)
        if c.mean is None:
            ax.text(x, 0.0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90,
                    transform=ax.get_xaxis_transform())
            continue
        std = c.std or 0.0
        ax.bar(x, c.mean, bar_w * 0.95, yerr=std, color=colors[i], capsize=3, label=variant)
        ax.scatter([x] * c.n, c.values, s=8, color="black", zorder=3)
        lo, hi = min(lo, c.mean - std, *c.values), max(hi, c.mean + std, *c.values)
    base = cell(results, BASELINE, metric).mean
    if base is not None and BASELINE in variants:
        ax.hlines(base, -0.45, 0.45, colors="0.3", linestyles="dashed", linewidth=1)
    ax.set_xticks([0])
    ax.set_xticklabels([results.tasks[task].primary_metric])
    ax.set_title(task)
    ax.grid(axis="y", alpha=0.3)
    if math.isfinite(lo):
        # Zoom on the differences (often in the third decimal); keep [0, 1] metrics in range.
        pad = max(0.02, 0.15 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi <= 1.0 else hi + pad)


def plot_metric_per_variant(results: StudyResults, path: str | Path) -> Path:
    """Bars, one panel per task: mean primary metric over seeds per variant, error bar = std.

    Black dots are the single seeds; the dashed line is the single-task mean; a
    variant without values is marked n/a.
    """
    tasks = list(results.tasks)
    cols = max(1, min(len(tasks), 3))
    rows = max(1, math.ceil(len(tasks) / cols))
    fig = new_figure(max(3.5, 0.45 * len(results.variants) + 1.5) * cols, 3.6 * rows + 0.6)
    axes = _grid(fig, len(tasks))
    colors = [f"C{i % 10}" for i in range(len(results.variants))]
    handles: dict[str, Artist] = {}
    for ax, task in zip(axes, tasks, strict=True):
        _task_panel(ax, results, task, colors)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncols=min(len(handles), 5), fontsize=8, frameon=False)
    fig.suptitle(f"{results.study}: mean ± std over seeds (dashed: single-task)", fontsize=10)
    return save_png(fig, path)


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


def plot_learning_curves(metrics_csv_paths: Mapping[str, str | Path], path: str | Path) -> Path:
    """Each loss term over steps: one panel per term, one line per run label.

    The terms are those :func:`read_loss_curves` finds, in its order. Raises
    ``ValueError`` when no file has a loss term.
    """
    runs = {label: read_loss_curves(p) for label, p in metrics_csv_paths.items()}
    names = sorted({t for curves in runs.values() for t in curves}, key=_term_order)
    if not names:
        raise ValueError("no loss terms found in the given metrics.csv files")
    cols = max(1, min(len(names), 3))
    fig = new_figure(4.2 * cols, 3.0 * math.ceil(len(names) / cols) + 0.6)
    axes = _grid(fig, len(names))
    colors = {label: f"C{i % 10}" for i, label in enumerate(runs)}
    handles: dict[str, Artist] = {}
    for ax, term in zip(axes, names, strict=True):
        for label, curves in runs.items():
            if term in curves:
                series = curves[term]
                (line,) = ax.plot(series.index.to_numpy(), series.to_numpy(), label=label,
                                  color=colors[label], linewidth=1.2, markersize=3,
                                  marker="o" if len(series) < 30 else None)
                handles.setdefault(label, line)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(len(handles), 4), fontsize=8, frameon=False)
    return save_png(fig, path)


__all__ = [
    "plot_learning_curves",
    "plot_metric_per_variant",
    "read_loss_curves",
]
