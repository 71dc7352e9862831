"""Plots of a study, drawn off-screen with matplotlib's Agg canvas (no display, no pyplot state).

* :func:`plot_metric_per_variant`: one panel per task, bars per variant
  (mean over seeds, error bar = sample std, dots = single seeds, dashed line =
  single-task mean), every y-axis from zero;
* :func:`plot_curves`: series of the runs' Lightning ``CSVLogger`` ``metrics.csv``
  (losses, validation metrics) over training steps, one panel per series, one colour
  per run: each seed thin, the mean over seeds thick with the seeds' min–max as a
  band, the best checkpoint and the stop of each seed marked;
  :func:`plot_learning_curves` draws the loss terms of one file per run.

Every function writes a PNG and returns its path. The numbers come from
:mod:`dmtl.study.statistics`; a relatedness table's heat map is
:func:`dmtl.knowledge.heatmap.plot_relatedness`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
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
    """One task's bars: mean per variant (its value written under the bar), error bar =
    sample std, dots = seeds; the y-axis starts at zero (:func:`_zero_based_limits`)."""
    metric = results.primary_metrics()[task]
    variants = list(results.variants)
    bar_w = 0.8 / max(1, len(variants))
    values: list[float] = []
    ticks: dict[float, str] = {}
    for i, variant in enumerate(variants):
        c = cell(results, variant, metric)
        x = -0.4 + bar_w * (i + 0.5)
        if c.mean is None:
            ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90,
                    transform=ax.get_xaxis_transform())
            continue
        std = c.std or 0.0
        ax.bar(x, c.mean, bar_w * 0.95, yerr=std, color=colors[i], capsize=3, label=variant,
               error_kw={"elinewidth": 1, "ecolor": "0.15"})
        ax.scatter([x] * c.n, c.values, s=8, color="black", zorder=3)
        ticks[x] = f"{c.mean:.3f}"
        values += [c.mean - std, c.mean + std, *c.values]
    base = cell(results, BASELINE, metric).mean
    if base is not None and BASELINE in variants:
        ax.axhline(base, color="0.3", linestyle="dashed", linewidth=1)
    ax.set_xticks(list(ticks), list(ticks.values()), fontsize=7,
                  rotation=90 if len(variants) > 4 else 0)
    ax.tick_params(axis="x", length=0)
    ax.set_xlim(-0.5, 0.5)
    ax.set_ylabel(f"{results.tasks[task].primary_metric} (axis from 0)", fontsize=8)
    ax.set_title(task)
    ax.grid(axis="y", alpha=0.3)
    ax.set_ylim(*_zero_based_limits(values))


def _zero_based_limits(values: list[float]) -> tuple[float, float]:
    """The y-range of a bar panel, from zero so that bar heights compare honestly:
    ``[0, 1.05]`` for values in ``[0, 1]`` (most metrics), else from ``min(0, lowest)``
    to ``max(0, highest)`` padded by 15 %.

    >>> _zero_based_limits([0.81, 0.83]), _zero_based_limits([-0.2, 2.0])
    ((0.0, 1.05), (-0.53, 2.33))
    """
    if not values or (min(values) >= 0.0 and max(values) <= 1.0):
        return (0.0, 1.05)
    low, high = min(0.0, min(values)), max(0.0, max(values))
    pad = 0.15 * (high - low)
    return (round(low - pad if low < 0 else 0.0, 6), round(high + pad, 6))


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
    fig.suptitle(f"{results.study}: mean ± std over seeds (dots: single seeds; dashed: "
                 "single-task mean); every y-axis starts at 0", fontsize=10)
    return save_png(fig, path)


# --------------------------------------------------------------------------- training curves


@dataclass(frozen=True)
class SeedLog:
    """One run's Lightning ``metrics.csv`` and the step of the checkpoint it was evaluated at
    (``None``: not recorded)."""

    metrics_csv: Path
    best_step: int | None = None


RunLogs = Mapping[str, Mapping[int, SeedLog]]
"""``{run label: {seed: SeedLog}}``: a study's logs, e.g. ``{"mtl": {0: ..., 1: ...}}``."""

CURVE_COLUMNS = ["run", "seed", "term", "step", "value"]
"""The columns of :func:`curves_frame` (and of the study's ``training_curves.csv``)."""


def _term_order(term: str) -> tuple[int, str]:
    if term == "train/loss":
        return (0, term)
    for i, prefix in enumerate(("train/sup/", "train/ca/", "train/dm/"), start=1):
        if term.startswith(prefix):
            return (i, term)
    if term.startswith("train/"):
        return (4, term)
    return (5 if term == "val/loss" else 6 if term == "val/selection" else 7, term)


def is_loss_term(term: str) -> bool:
    """The loss terms: every ``train/*`` series and ``val/loss``."""
    return term.startswith("train/") or term == "val/loss"


def read_curves(path: str | Path, wanted: Callable[[str], bool]) -> dict[str, pd.Series]:
    """The series of a Lightning ``metrics.csv`` whose name ``wanted`` accepts:
    ``{name: values indexed by step}``, in :func:`_term_order`.

    Lightning writes one sparse row per logging call (NaN elsewhere); each series keeps
    its non-NaN rows, sorted by ``step``, duplicated steps averaged. Where a name is
    logged both per step and per epoch (``_step``/``_epoch`` suffixes) the per-step
    series is used, under the bare name.
    """
    frame = pd.read_csv(path)
    steps = (
        pd.to_numeric(frame["step"], errors="coerce")
        if "step" in frame.columns
        else pd.Series(np.arange(len(frame), dtype=float))
    )
    candidates: dict[str, dict[str, str]] = {}
    for col in map(str, frame.columns):
        base, kind = col, ""
        for suffix in _SUFFIXES:
            if col.endswith(suffix):
                base, kind = col[: -len(suffix)], suffix
        if col not in ("epoch", "step") and wanted(base):
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


def read_loss_curves(path: str | Path) -> dict[str, pd.Series]:
    """Loss terms of a Lightning ``metrics.csv`` (:func:`read_curves` of :func:`is_loss_term`):
    ``train/loss``, ``train/sup/<t>``, ``train/ca/<a>-><b>``, ``train/dm/<a>-><b>``,
    ``val/loss``."""
    return read_curves(path, is_loss_term)


def curves_frame(logs: RunLogs, wanted: Callable[[str], bool]) -> pd.DataFrame:
    """Every wanted series of every run and seed, long: :data:`CURVE_COLUMNS`."""
    parts = [
        pd.DataFrame({"run": label, "seed": seed, "term": term,
                      "step": series.index.to_numpy(), "value": series.to_numpy()})
        for label, seeds in logs.items()
        for seed, log in seeds.items()
        for term, series in read_curves(log.metrics_csv, wanted).items()
    ]
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[CURVE_COLUMNS]


def _best_point(series: pd.Series, best_step: int | None) -> tuple[float, float] | None:
    """The logged point of the best checkpoint: the last one before ``best_step`` (a
    checkpoint's step counts the steps done; Lightning logs the last training step of its
    epoch, and the epoch's validation, at ``best_step - 1``)."""
    if best_step is None:
        return None
    before = series[series.index < best_step]
    return None if before.empty else (float(before.index[-1]), float(before.iloc[-1]))


def _draw_run(ax: Axes, data: pd.DataFrame, color: str, best: Mapping[int, int | None]) -> Artist:
    """One run label on one panel: each seed thin, the mean over seeds thick, the min–max
    band, ``o`` at each seed's best checkpoint and ``x`` at its stop (last logged point)."""
    wide = data.pivot_table(index="step", columns="seed", values="value", aggfunc="mean")
    steps = wide.index.to_numpy(dtype=float)
    for seed in wide.columns:
        series = wide[seed].dropna()
        ax.plot(series.index, series.to_numpy(), color=color, linewidth=0.6, alpha=0.45)
        ax.plot(series.index[-1], series.iloc[-1], marker="x", color=color, markersize=6,
                linestyle="none")
        if (point := _best_point(series, best.get(int(seed)))) is not None:
            ax.plot(*point, marker="o", markerfacecolor="none", markeredgecolor=color,
                    markeredgewidth=1.4, markersize=7, linestyle="none")
    mean = wide.mean(axis=1).to_numpy()
    if wide.shape[1] > 1:
        ax.fill_between(steps, wide.min(axis=1).to_numpy(), wide.max(axis=1).to_numpy(),
                        color=color, alpha=0.15, linewidth=0)
        # dashed where some seeds have stopped: the mean of fewer seeds, not a trend
        ax.plot(steps, mean, color=color, linewidth=1.4, linestyle=(0, (4, 2)))
    every_seed = wide.notna().all(axis=1).to_numpy()
    (line,) = ax.plot(steps, np.where(every_seed, mean, np.nan), color=color, linewidth=1.8)
    return line


MARK_HANDLES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mean over seeds", {"color": "0.2", "linewidth": 1.8}),
    ("mean of the seeds not stopped yet", {"color": "0.2", "linewidth": 1.4,
                                           "linestyle": (0, (4, 2))}),
    ("single seeds (band: min–max)", {"color": "0.2", "linewidth": 0.6, "alpha": 0.45}),
    ("best checkpoint", {"marker": "o", "markerfacecolor": "none", "markeredgecolor": "0.2",
                         "linestyle": "none"}),
    ("stop (last epoch)", {"marker": "x", "color": "0.2", "linestyle": "none"}),
)


def plot_curves(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    best_steps: Mapping[tuple[str, int], int | None] | None = None,
    title: str = "",
    colors: Mapping[str, str] | None = None,
    order: Sequence[str] = (),
) -> Path:
    """One panel per term of ``frame`` (:data:`CURVE_COLUMNS`), one colour per run label:
    each seed thin, the mean over the seeds logged at a step thick, their min–max as a
    band; ``o``: the seed's best checkpoint (``best_steps[(run, seed)]``), ``x``: its
    stop. Panels: the terms of ``order`` first, in that order, then the others.
    Raises ``ValueError`` when ``frame`` is empty."""
    if frame.empty:
        raise ValueError("no curves to draw")
    rank = {term: i for i, term in enumerate(order)}
    terms = sorted(frame["term"].unique(),
                   key=lambda t: (rank.get(t, len(rank)), *_term_order(t)))
    labels = list(dict.fromkeys(frame["run"]))
    palette = {**run_colors(labels), **(colors or {})}
    cols = 2 if len(terms) == 4 else max(1, min(len(terms), 3))
    fig = new_figure(4.4 * cols, 3.1 * math.ceil(len(terms) / cols) + 1.0)
    handles: dict[str, Artist] = {}
    for ax, term in zip(_grid(fig, len(terms), cols), terms, strict=True):
        for label, data in frame[frame["term"] == term].groupby("run", sort=False):
            best = {s: (best_steps or {}).get((str(label), s)) for s in data["seed"].unique()}
            handles.setdefault(str(label), _draw_run(ax, data, palette[str(label)], best))
        _style_panel(ax, term)
    ordered = [str(label) for label in labels if label in handles]
    marks: list[Artist] = [Line2D([], [], **style) for _, style in MARK_HANDLES]
    fig.legend([handles[label] for label in ordered] + marks,
               ordered + [name for name, _ in MARK_HANDLES], loc="outside lower center",
               ncols=min(len(ordered) + len(marks), 4), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_png(fig, path)


def run_colors(labels: Sequence[str]) -> dict[str, str]:
    """A colour per label: matplotlib's ten cycle colours, ``tab20`` beyond ten labels."""
    if len(labels) <= 10:
        return {label: f"C{i}" for i, label in enumerate(labels)}
    return {label: to_hex(colormaps["tab20"](i % 20)) for i, label in enumerate(labels)}


def _style_panel(ax: Axes, term: str) -> None:
    ax.set_title(term, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def plot_learning_curves(metrics_csv_paths: Mapping[str, str | Path], path: str | Path) -> Path:
    """Each loss term over steps (one panel per term), one line per run label, from one
    ``metrics.csv`` per label (:func:`plot_curves` of :func:`read_loss_curves`). Raises
    ``ValueError`` when no file has a loss term."""
    logs = {label: {0: SeedLog(Path(p))} for label, p in metrics_csv_paths.items()}
    frame = curves_frame(logs, is_loss_term)
    if frame.empty:
        raise ValueError("no loss terms found in the given metrics.csv files")
    return plot_curves(frame, path)


__all__ = [
    "CURVE_COLUMNS",
    "RunLogs",
    "SeedLog",
    "curves_frame",
    "is_loss_term",
    "plot_curves",
    "plot_learning_curves",
    "plot_metric_per_variant",
    "read_curves",
    "read_loss_curves",
    "run_colors",
]
