"""The files of a study's report: ``report.md`` and its plots, written into the study folder.

This is where the text of :mod:`dmtl.study.report` meets the drawings of
:mod:`dmtl.study.plots` (neither imports the other).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dmtl.study.plots import plot_learning_curves, plot_metric_per_variant
from dmtl.study.report import REPORT_NAME, render_markdown
from dmtl.study.results import StudyResults

METRIC_PLOT = "metric_per_variant.png"
LEARNING_CURVES_PLOT = "learning_curves.png"


def _find_metrics_csv(run_dir: Path) -> Path | None:
    """The Lightning ``metrics.csv`` under ``run_dir`` (newest if several), or ``None``."""
    if not run_dir.is_dir():
        return None
    found = sorted(run_dir.rglob("metrics.csv"), key=lambda p: (p.stat().st_mtime, str(p)))
    return found[-1] if found else None


def learning_curve_sources(
    results: StudyResults, study_dir: Path
) -> tuple[int | None, dict[str, Path]]:
    """``(seed, {label: metrics.csv})`` for the done runs of the first seed with any log file.

    Labels are variant names, ``single_task[<task>]`` for single-task runs; files are
    searched under ``study_dir / run.run_dir``. ``(None, {})`` when none is found.
    """
    for seed in results.seeds:
        found: dict[str, Path] = {}
        for run in results.runs:
            if run.seed != seed or run.status != "done" or not run.run_dir:
                continue
            csv = _find_metrics_csv(study_dir / run.run_dir)
            if csv is not None:
                found[run.variant if run.task is None else f"{run.variant}[{run.task}]"] = csv
        if found:
            return seed, found
    return None, {}


def write_report(
    results: StudyResults,
    out_dir: str | Path,
    *,
    extra_plots: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write ``report.md`` and its PNG plots into the study folder ``out_dir``; return its path.

    Plots: ``metric_per_variant.png`` (always) and ``learning_curves.png`` (one seed,
    when the runs' ``metrics.csv`` files are found under ``out_dir / run.run_dir``).
    ``extra_plots`` (caption -> image, e.g. relatedness heat maps) are linked too: an
    absolute path is made relative to ``out_dir``. The report is replaced atomically.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_metric_per_variant(results, out / METRIC_PLOT)
    plots = {"Primary metric per variant (mean ± std over seeds)": METRIC_PLOT}
    seed, sources = learning_curve_sources(results, out)
    if sources:
        try:
            plot_learning_curves(sources, out / LEARNING_CURVES_PLOT)
            plots[f"Loss terms over training steps (seed {seed})"] = LEARNING_CURVES_PLOT
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            pass  # malformed or empty logs: the report is still worth writing
    for caption, path in (extra_plots or {}).items():
        p = Path(path)
        plots[caption] = os.path.relpath(p, out) if p.is_absolute() else p.as_posix()
    report = out / REPORT_NAME
    tmp = report.with_name(f".{REPORT_NAME}.tmp")
    tmp.write_text(render_markdown(results, plots), encoding="utf-8")
    os.replace(tmp, report)
    return report


__all__ = [
    "LEARNING_CURVES_PLOT",
    "METRIC_PLOT",
    "learning_curve_sources",
    "write_report",
]
