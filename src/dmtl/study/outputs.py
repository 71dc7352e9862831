"""The files of a study's report: ``report.md`` and its plots, written into the study folder.

This is where the text of :mod:`dmtl.study.report` meets the drawings of
:mod:`dmtl.study.plots` (neither imports the other).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dmtl.study.plots import (
    SeedLog,
    curves_frame,
    is_loss_term,
    plot_curves,
    plot_metric_per_variant,
    run_colors,
)
from dmtl.study.report import REPORT_NAME, render_markdown
from dmtl.study.results import RunRecord, StudyResults

METRIC_PLOT = "metric_per_variant.png"
LEARNING_CURVES_PLOT = "learning_curves.png"
VALIDATION_CURVES_PLOT = "validation_curves.png"
CURVES_CSV = "training_curves.csv"
"""Every curve drawn, long (``run``, ``seed``, ``term``, ``step``, ``value``)."""

_CURVE_NOTE = "all seeds: mean (thick), min–max band, each seed (thin); best checkpoint o, stop x"
_BAD_LOG = (OSError, ValueError, KeyError, pd.errors.ParserError)
"""What a malformed or unreadable ``metrics.csv`` raises (the report is still written)."""


def run_label(run: RunRecord) -> str:
    """A run's label in the plots: its variant, ``single_task[<task>]`` for single-task runs."""
    return run.variant if run.task is None else f"{run.variant}[{run.task}]"


def _find_metrics_csv(run_dir: Path) -> Path | None:
    """The Lightning ``metrics.csv`` under ``run_dir`` (newest if several), or ``None``."""
    if not run_dir.is_dir():
        return None
    found = sorted(run_dir.rglob("metrics.csv"), key=lambda p: (p.stat().st_mtime, str(p)))
    return found[-1] if found else None


def training_logs(results: StudyResults, study_dir: Path) -> dict[str, dict[int, SeedLog]]:
    """``{label: {seed: SeedLog}}`` of every done run whose ``metrics.csv`` is found under
    ``study_dir / run.run_dir``, with the step of the checkpoint it was evaluated at."""
    logs: dict[str, dict[int, SeedLog]] = {}
    for run in results.runs:
        if run.status != "done" or not run.run_dir:
            continue
        csv = _find_metrics_csv(study_dir / run.run_dir)
        if csv is not None:
            logs.setdefault(run_label(run), {})[run.seed] = SeedLog(csv, run.best_step)
    return logs


def learning_curve_sources(
    results: StudyResults, study_dir: Path
) -> tuple[int | None, dict[str, Path]]:
    """``(seed, {label: metrics.csv})`` for the done runs of the first seed with any log file
    (:func:`training_logs` has every seed). ``(None, {})`` when none is found."""
    logs = training_logs(results, study_dir)
    for seed in results.seeds:
        found = {label: seeds[seed].metrics_csv for label, seeds in logs.items() if seed in seeds}
        if found:
            return seed, found
    return None, {}


def validation_terms(results: StudyResults) -> list[str]:
    """The validation series drawn: ``val/selection`` (the mean primary metric over a run's
    tasks, what early stopping watches) and each task's primary metric."""
    return ["val/selection", *(f"val/{m}" for m in results.primary_metrics().values())]


def write_curves(results: StudyResults, out: Path) -> dict[str, str]:
    """Draw the loss and the validation curves of every seed into ``out`` and save their data
    (:data:`CURVES_CSV`); ``{caption: file}`` of the figures written (none without logs)."""
    logs = training_logs(results, out)
    order = validation_terms(results)
    try:
        every = curves_frame(logs, lambda term: is_loss_term(term) or term in order)
    except _BAD_LOG:
        return {}  # malformed logs: the report is still worth writing
    losses = every["term"].map(is_loss_term).astype(bool)
    figures = {
        LEARNING_CURVES_PLOT: ("Loss terms over training steps", "", every[losses]),
        VALIDATION_CURVES_PLOT: ("Validation metrics over training steps",
                                 " (val/selection: mean primary metric over the run's tasks)",
                                 every[~losses]),
    }
    colors = run_colors(list(dict.fromkeys(every["run"])))  # a run's colour in both figures
    best = {(label, seed): log.best_step for label, seeds in logs.items()
            for seed, log in seeds.items()}
    written: dict[str, str] = {}
    for name, (title, detail, frame) in figures.items():
        if not frame.empty:
            plot_curves(frame, out / name, best_steps=best, title=title + detail,
                        colors=colors, order=order)
            written[f"{title} ({_CURVE_NOTE})"] = name
    if written:
        every.to_csv(out / CURVES_CSV, index=False)
    return written


def _link(path: str | Path, out: Path) -> str:
    """``path`` (absolute, or relative to the working directory) relative to the folder
    ``out`` of the report, with ``/``: a Markdown link that works wherever the report is
    read from."""
    return Path(os.path.relpath(Path(path).resolve(), out.resolve())).as_posix()


def write_report(
    results: StudyResults,
    out_dir: str | Path,
    *,
    extra_plots: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write ``report.md`` and its PNG plots into the study folder ``out_dir``; return its path.

    Plots: ``metric_per_variant.png`` (always); ``learning_curves.png`` and
    ``validation_curves.png`` with ``training_curves.csv`` (every seed, when the runs'
    ``metrics.csv`` files are found under ``out_dir / run.run_dir``). ``extra_plots``
    (caption -> image, e.g. relatedness heat maps; a path as this process sees it,
    absolute or relative to the working directory) are linked relative to the report.
    The report is replaced atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_metric_per_variant(results, out / METRIC_PLOT)
    plots = {"Primary metric per variant (mean ± std over seeds; y-axis from 0)": METRIC_PLOT}
    curves = write_curves(results, out)
    plots |= curves
    for caption, path in (extra_plots or {}).items():
        plots[caption] = _link(path, out)
    files = {"Data of the curves (run, seed, term, step, value)": CURVES_CSV} if curves else {}
    report = out / REPORT_NAME
    tmp = report.with_name(f".{REPORT_NAME}.tmp")
    tmp.write_text(render_markdown(results, plots, files=files), encoding="utf-8")
    os.replace(tmp, report)
    return report


__all__ = [
    "CURVES_CSV",
    "LEARNING_CURVES_PLOT",
    "METRIC_PLOT",
    "VALIDATION_CURVES_PLOT",
    "learning_curve_sources",
    "run_label",
    "training_logs",
    "validation_terms",
    "write_curves",
    "write_report",
]
