"""Aggregate a study's runs over seeds, judge negative transfer, and write ``report.md``.

Statistics, per variant and metric, over the seeds whose run is ``done`` and
whose value is not ``None``:

* ``mean = (1/n) sum_i v_i``;
* ``std`` = sample standard deviation ``sqrt(sum_i (v_i - mean)^2 / (n - 1))``
  (``ddof = 1``), defined as 0 when ``n = 1``;
* ``n`` = number of values.

The ``single_task`` row of a table is assembled from the per-task single-task
runs: for task ``t``, the runs whose ``task == t`` (each trained on exactly
``t``'s labels), metric ``t/<metric>``.

Negative transfer (method, section 8: a multi-task model worse than the
single-task model of a task): for variant ``v`` and task ``t`` with primary
metric ``m`` (higher is better),

* ``gain = mean_v - mean_single``;
* ``pooled std = sqrt((s_v^2 + s_single^2) / 2)``;
* negative transfer iff ``gain < -pooled std`` (a drop of more than one pooled
  std; a tolerance of ``1e-9`` absorbs rounding). With one seed both stds are
  0, so *any* drop counts.

>>> from dmtl.study.results import RunRecord, StudyResults, TaskInfo, upsert_run
>>> r = StudyResults(study="s", tasks={"d": TaskInfo(kind="categorical",
...     primary_metric="accuracy", names=["0", "1"])}, variants=["single_task", "mtl"], seeds=[0])
>>> _ = upsert_run(r, RunRecord(variant="single_task", task="d", seed=0, status="done",
...     metrics={"d/accuracy": 0.90}))
>>> _ = upsert_run(r, RunRecord(variant="mtl", seed=0, status="done", metrics={"d/accuracy": 0.85}))
>>> verdict_text(negative_transfer(r)["mtl"])
'negative transfer on: d (−0.050)'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from rich.table import Table
from rich.text import Text

from dmtl.study.results import BASELINE, StudyResults, missing_runs

TOLERANCE = 1e-9
"""Numerical slack in the negative-transfer test (metrics live in [0, 1])."""

STATS: tuple[str, str, str] = ("mean", "std", "n")
"""The sub-columns of every metric in :func:`summary_table`."""

METRIC_PLOT = "metric_per_variant.png"
LEARNING_CURVES_PLOT = "learning_curves.png"
REPORT_NAME = "report.md"


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Cell:
    """One variant's values of one metric over seeds, and their mean, sample std and count."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """``(1/n) sum v_i``; ``None`` without values."""
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample std (``ddof = 1``); 0 for one value, ``None`` without values."""
        if not self.values:
            return None
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


def metric_values(results: StudyResults, variant: str, metric: str) -> list[float]:
    """Values of ``metric`` over the ``done`` runs of ``variant``, in seed order, ``None`` skipped.

    For ``single_task`` the value of ``<t>/...`` comes from the run with ``task == t``.
    """
    task = metric.split("/", 1)[0]
    out: list[tuple[int, float]] = []
    for run in results.runs:
        if run.variant != variant or run.status != "done":
            continue
        if variant == BASELINE and run.task != task:
            continue
        value = run.metrics.get(metric)
        if value is not None and math.isfinite(value):
            out.append((run.seed, float(value)))
    return [v for _, v in sorted(out, key=lambda sv: sv[0])]


def cell(results: StudyResults, variant: str, metric: str) -> Cell:
    """:class:`Cell` of ``metric`` for ``variant`` (see :func:`metric_values`)."""
    return Cell(tuple(metric_values(results, variant, metric)))


def _metric_sort_key(results: StudyResults, name: str) -> tuple[int, int, str]:
    task, _, key = name.partition("/")
    tasks = list(results.tasks)
    t_index = tasks.index(task) if task in tasks else len(tasks)
    if task in results.tasks and key == results.tasks[task].primary_metric:
        rank = 0
    elif "/" not in key:
        rank = 1  # summary metrics: accuracy, f1_macro, num_labelled...
    else:
        rank = 2  # per-class / per-label metrics
    return (t_index, rank, name)


def all_metric_names(results: StudyResults) -> list[str]:
    """Every metric name present in a done run (single-task runs: their own task's only), ordered.

    Order: by task, primary metric first, then summary metrics, then per-output metrics.
    """
    names: set[str] = set(results.primary_metrics().values())
    for run in results.runs:
        if run.status != "done":
            continue
        for name in run.metrics:
            if run.task is None or name.split("/", 1)[0] == run.task:
                names.add(name)
    return sorted(names, key=lambda n: _metric_sort_key(results, n))


def summary_table(
    results: StudyResults, metrics: Literal["primary", "all"] = "primary"
) -> pd.DataFrame:
    """Mean, std (``ddof = 1``; 0 for one seed) and n per variant (rows) and metric (columns).

    Columns are a ``(metric, stat)`` MultiIndex, stat in ``mean``, ``std``, ``n``;
    ``metrics="primary"`` keeps each task's primary metric, ``"all"`` every metric
    found. Rows follow ``results.variants``; a cell without values has NaN mean/std, n 0.
    """
    names = (
        list(results.primary_metrics().values())
        if metrics == "primary"
        else all_metric_names(results)
    )
    data: dict[tuple[str, str], list[float] | list[int]] = {}
    for name in names:
        cells = [cell(results, v, name) for v in results.variants]
        data[(name, "mean")] = [math.nan if c.mean is None else c.mean for c in cells]
        data[(name, "std")] = [math.nan if c.std is None else c.std for c in cells]
        data[(name, "n")] = [c.n for c in cells]
    frame = pd.DataFrame(data, index=pd.Index(list(results.variants), name="variant"))
    frame.columns = (
        pd.MultiIndex.from_tuples(list(data), names=["metric", "stat"])
        if data
        else pd.MultiIndex.from_arrays([[], []], names=["metric", "stat"])
    )
    return frame


# --------------------------------------------------------------------------- negative transfer


@dataclass(frozen=True)
class Verdict:
    """Variant vs single-task on one task's primary metric.

    ``gain = mean - baseline_mean``; ``pooled_std = sqrt((std^2 + baseline_std^2) / 2)``;
    ``negative`` iff ``gain < -pooled_std`` (both ``None``/``False`` when a side has no values).
    """

    variant: str
    task: str
    metric: str
    variant_cell: Cell
    baseline_cell: Cell

    @property
    def available(self) -> bool:
        """Both sides have at least one value."""
        return self.variant_cell.n > 0 and self.baseline_cell.n > 0

    @property
    def gain(self) -> float | None:
        if not self.available:
            return None
        assert self.variant_cell.mean is not None and self.baseline_cell.mean is not None
        return self.variant_cell.mean - self.baseline_cell.mean

    @property
    def pooled_std(self) -> float | None:
        if not self.available:
            return None
        s1, s2 = self.variant_cell.std or 0.0, self.baseline_cell.std or 0.0
        return math.sqrt((s1 * s1 + s2 * s2) / 2.0)

    @property
    def negative(self) -> bool:
        gain, pooled = self.gain, self.pooled_std
        return gain is not None and pooled is not None and gain < -pooled - TOLERANCE


def negative_transfer(results: StudyResults) -> dict[str, dict[str, Verdict]]:
    """``{variant: {task: Verdict}}`` for every variant but ``single_task``, on primary metrics."""
    primaries = results.primary_metrics()
    baseline = {t: cell(results, BASELINE, m) for t, m in primaries.items()}
    return {
        v: {t: Verdict(v, t, m, cell(results, v, m), baseline[t]) for t, m in primaries.items()}
        for v in results.variants
        if v != BASELINE
    }


def tasks_hurt(verdicts: Mapping[str, Verdict]) -> list[str]:
    """Tasks with negative transfer, in task order."""
    return [t for t, v in verdicts.items() if v.negative]


def _signed(x: float, digits: int = 3) -> str:
    """``+0.012`` / ``−0.031`` (a true minus sign); ``±0.000`` never shows a sign flip."""
    text = f"{x:+.{digits}f}"
    if float(text) == 0.0:
        text = f"{0.0:+.{digits}f}"
    return text.replace("-", "−")


def verdict_text(verdicts: Mapping[str, Verdict]) -> str:
    """``"none"``, ``"negative transfer on: shape (−0.031)"``, or ``"n/a"`` (nothing comparable).

    ``"none"`` is followed by ``(not compared: t)`` for tasks lacking values.
    """
    hurt = [v for v in verdicts.values() if v.negative]
    if hurt:
        return "negative transfer on: " + ", ".join(
            f"{v.task} ({_signed(v.gain or 0.0)})" for v in hurt
        )
    missing = [t for t, v in verdicts.items() if not v.available]
    if len(missing) == len(verdicts):
        return "n/a"
    return "none" + (f" (not compared: {', '.join(missing)})" if missing else "")


def best_variants(results: StudyResults) -> dict[str, list[str]]:
    """``{task: variants with the highest mean primary metric}`` (ties listed; ``[]`` if none)."""
    out: dict[str, list[str]] = {}
    for task, metric in results.primary_metrics().items():
        means = {v: cell(results, v, metric).mean for v in results.variants}
        valid = {v: m for v, m in means.items() if m is not None}
        if not valid:
            out[task] = []
            continue
        top = max(valid.values())
        out[task] = [v for v, m in valid.items() if m >= top - TOLERANCE]
    return out


# --------------------------------------------------------------------------- rendering


def _fmt_cell(c: Cell, n_seeds: int, digits: int = 3) -> str:
    if c.mean is None:
        return "n/a"
    text = f"{c.mean:.{digits}f} ± {c.std or 0.0:.{digits}f}"
    return text + (f" (n={c.n})" if c.n != n_seeds else "")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _task_header(results: StudyResults, task: str) -> str:
    return f"{task} ({results.tasks[task].primary_metric})"


def _row_name(variant: str) -> str:
    return f"{variant} (baseline)" if variant == BASELINE else variant


def _table_rows(results: StudyResults, bold: bool) -> list[list[str]]:
    """Rows ``[variant, cell per task..., verdict]``, baseline first; best cells bold if asked."""
    primaries = results.primary_metrics()
    verdicts = negative_transfer(results)
    best = best_variants(results)
    order = ([BASELINE] if BASELINE in results.variants else []) + [
        v for v in results.variants if v != BASELINE
    ]
    rows: list[list[str]] = []
    for v in order:
        row = [_row_name(v)]
        for t, m in primaries.items():
            text = _fmt_cell(cell(results, v, m), len(results.seeds))
            row.append(f"**{text}**" if bold and v in best[t] and text != "n/a" else text)
        row.append("— (baseline)" if v == BASELINE else verdict_text(verdicts[v]))
        rows.append(row)
    return rows


def _one_seed_somewhere(results: StudyResults) -> bool:
    cells = [
        cell(results, v, m) for v in results.variants for m in results.primary_metrics().values()
    ]
    return any(c.n == 1 for c in cells)


def _run_counts(results: StudyResults) -> str:
    done = sum(r.status == "done" for r in results.runs)
    failed = sum(r.status == "failed" for r in results.runs)
    wall = sum(r.wall_s or 0.0 for r in results.runs)
    missing = len(missing_runs(results))
    return f"{done} done, {failed} failed, {missing} missing; total wall time {wall:.1f} s"


def _summary_lines(results: StudyResults) -> list[str]:
    tasks = ", ".join(
        f"{t} ({i.kind.replace('_', ' ')}, {len(i.names)} "
        f"{'classes' if i.kind == 'categorical' else 'labels'}; primary: {i.primary_metric})"
        for t, i in results.tasks.items()
    )
    splits = sorted({r.split for r in results.runs if r.status == "done" and r.split}) or ["-"]
    hw = results.hardware
    hardware = ", ".join(
        x
        for x in (
            hw.platform,
            f"{hw.cpu_count} CPUs" if hw.cpu_count else "",
            f"torch {hw.torch}" if hw.torch else "",
            f"device {hw.device}" if hw.device else "",
        )
        if x
    )
    lines = []
    if results.command:
        lines.append(f"- Command: `{results.command}`")
    lines += [
        f"- Created: {results.created.isoformat(timespec='seconds')}, dmtl {results.dmtl_version}",
        f"- Tasks: {tasks}",
        f"- Variants: {', '.join(results.variants)}",
        f"- Seeds: {', '.join(map(str, results.seeds))}; evaluated on split: {', '.join(splits)}",
        f"- Runs: {_run_counts(results)}",
        f"- Hardware: {hardware}",
    ]
    return lines


def _details(title: str, payload: object) -> list[str]:
    body = json.dumps(payload, indent=2, sort_keys=True, default=str)
    return [
        "<details>",
        f"<summary>{title}</summary>",
        "",
        "```json",
        body,
        "```",
        "",
        "</details>",
    ]


def render_markdown(results: StudyResults, plots: Mapping[str, str] | None = None) -> str:
    """The report as Markdown; ``plots`` maps a caption to an image path (relative to the report).

    Sections: summary (command, tasks, variants, seeds, hardware), the table of
    mean ± std per variant and task with the negative-transfer verdict, gains
    over single-task with the rule, best variant per task, failed and missing
    runs, plots, and the config / regime records.
    """
    primaries = results.primary_metrics()
    out = [f"# dmtl study: {results.study}", "", *_summary_lines(results), ""]

    out += ["## Results (primary metric, mean ± std over seeds)", ""]
    header = ["variant", *(_task_header(results, t) for t in primaries), "negative transfer"]
    out += _md_table(header, _table_rows(results, bold=True))
    out += [
        "",
        f"Std: sample standard deviation over seeds (ddof = 1; 0 with one seed). "
        f"Cells based on fewer than {len(results.seeds)} seed(s) show their n. "
        "Bold: best variant for the task. The `single_task` row uses, for each task, "
        "the model trained on that task alone.",
        "",
    ]

    verdicts = negative_transfer(results)
    if verdicts:
        out += ["## Gain over single-task", ""]
        rows = []
        for v, per_task in verdicts.items():
            row = [v]
            for vd in per_task.values():
                if vd.gain is None or vd.pooled_std is None:
                    row.append("n/a")
                else:
                    flag = " **negative**" if vd.negative else ""
                    row.append(f"{_signed(vd.gain)} (pooled std {vd.pooled_std:.3f}){flag}")
            rows.append(row)
        out += _md_table(["variant", *primaries], rows)
        out += [
            "",
            "Rule: gain = mean(variant) − mean(single_task); pooled std = "
            "sqrt((s_variant² + s_single²) / 2). A task counts as **negative transfer** for a "
            "variant when gain < −pooled std, i.e. the variant is below the single-task model "
            "by more than one pooled std.",
        ]
        if _one_seed_somewhere(results):
            out.append(
                "Note: some cells rest on a single seed, whose std is 0, so for them **any** drop "
                "below the single-task mean counts as negative transfer. Run more seeds to "
                "tell a real drop from noise."
            )
        out.append("")

    out += ["## Best variant per task", ""]
    for task, variants in best_variants(results).items():
        if not variants:
            out.append(f"- {_task_header(results, task)}: n/a")
            continue
        c = cell(results, variants[0], primaries[task])
        out.append(
            f"- {_task_header(results, task)}: {', '.join(variants)} "
            f"({_fmt_cell(c, len(results.seeds))})"
        )
    out.append("")

    failed = [r for r in results.runs if r.status == "failed"]
    missing = missing_runs(results)
    out += ["## Failed runs", ""]
    if not failed:
        out.append("none")
    for r in failed:
        first = _error_line(r.error)
        if len(first) > 300:
            first = first[:297] + "..."
        where = f" (`{r.run_dir}`)" if r.run_dir else ""
        out.append(f"- {r.label()}{where}: {first}")
    if missing:
        out += ["", "Not run yet: " + ", ".join(_key_label(k) for k in missing)]
    out.append("")

    if plots:
        out += ["## Plots", ""]
        out += [f"- [{caption}]({path})" for caption, path in plots.items()]
        out.append("")
        for caption, path in plots.items():
            out += [f"![{caption}]({path})", ""]

    if results.config:
        out += [*_details("Config", results.config), ""]
    if results.regime:
        out += [*_details("Label regime per seed", results.regime), ""]
    return "\n".join(out).rstrip() + "\n"


def _error_line(error: str | None) -> str:
    """One line naming an error: its first line, or a bare traceback's last (``Type: message``)."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return "no error recorded"
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _key_label(key: tuple[str, int, str | None]) -> str:
    variant, seed, task = key
    name = variant if task is None else f"{variant}[{task}]"
    return f"{name} seed {seed}"


def rich_table(results: StudyResults) -> Table:
    """The primary-metric table of :func:`render_markdown` for the terminal (best cells bold)."""
    primaries = results.primary_metrics()
    table = Table(title=f"dmtl study: {results.study} (mean ± std over seeds)")
    table.add_column("variant", style="cyan", no_wrap=True)
    for t in primaries:
        header = f"{t}\n({results.tasks[t].primary_metric})"
        table.add_column(header, justify="right")
    table.add_column("negative transfer")
    best = best_variants(results)
    for row in _table_rows(results, bold=False):
        cells: list[str | Text] = [row[0]]
        for (t, _), text in zip(primaries.items(), row[1:-1], strict=True):
            variant = row[0].removesuffix(" (baseline)")
            cells.append(Text(text, style="bold green" if variant in best[t] else ""))
        verdict = row[-1]
        negative = verdict.startswith("negative")
        # The column header already says it: keep the tasks and their gains.
        short = verdict.removeprefix("negative transfer on: ")
        cells.append(Text(short, style="red" if negative else ""))
        table.add_row(*cells)
    return table


# --------------------------------------------------------------------------- writing


def find_metrics_csv(run_dir: Path) -> Path | None:
    """The Lightning ``metrics.csv`` under ``run_dir`` (newest if several), or ``None``."""
    if not run_dir.is_dir():
        return None
    found = sorted(run_dir.rglob("metrics.csv"), key=lambda p: (p.stat().st_mtime, str(p)))
    return found[-1] if found else None


def learning_curve_sources(
    results: StudyResults, study_dir: Path, seed: int | None = None
) -> tuple[int | None, dict[str, Path]]:
    """``(seed, {label: metrics.csv})`` for the done runs of one seed.

    The seed is ``seed`` or else the first of ``results.seeds`` with any file;
    ``(None, {})`` when none is found. Labels are variant names,
    ``single_task[<task>]`` for single-task runs; files are searched under
    ``study_dir / run.run_dir``.
    """
    seeds = [seed] if seed is not None else list(results.seeds)
    for s in seeds:
        found: dict[str, Path] = {}
        for run in results.runs:
            if run.seed != s or run.status != "done" or not run.run_dir:
                continue
            csv = find_metrics_csv(study_dir / run.run_dir)
            if csv is not None:
                found[run.variant if run.task is None else f"{run.variant}[{run.task}]"] = csv
        if found:
            return s, found
    return None, {}


def write_report(
    results: StudyResults,
    out_dir: str | Path,
    *,
    study_dir: str | Path | None = None,
    extra_plots: Mapping[str, str | Path] | None = None,
    curves_seed: int | None = None,
) -> Path:
    """Write ``report.md`` plus its PNG plots into ``out_dir``; return the report's path.

    Plots: ``metric_per_variant.png`` (always) and ``learning_curves.png`` (when
    the runs' ``metrics.csv`` files are found under ``study_dir / run.run_dir``,
    ``study_dir`` defaulting to ``out_dir``; one seed, ``curves_seed`` or the
    first with files). ``extra_plots`` (caption -> image, e.g. relatedness
    heat maps from :func:`dmtl.study.plots.plot_relatedness`) are linked too:
    an absolute path is made relative to ``out_dir``, a relative one is used as is.
    """
    from dmtl.study.plots import plot_learning_curves, plot_metric_per_variant

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    plot_metric_per_variant(results, out / METRIC_PLOT)
    plots["Primary metric per variant (mean ± std over seeds)"] = METRIC_PLOT

    root = Path(study_dir) if study_dir is not None else out
    seed, sources = learning_curve_sources(results, root, curves_seed)
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
    "Cell",
    "Verdict",
    "all_metric_names",
    "best_variants",
    "cell",
    "find_metrics_csv",
    "learning_curve_sources",
    "metric_values",
    "negative_transfer",
    "render_markdown",
    "rich_table",
    "summary_table",
    "tasks_hurt",
    "verdict_text",
    "write_report",
]
