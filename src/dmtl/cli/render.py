"""Rich rendering for the terminal: tables (a study's unwrapped where stdout is not a terminal)
and a study's progress."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from dmtl.study.observer import StudyObserver

if TYPE_CHECKING:  # pandas is imported when a table is drawn, not at `dmtl --help`
    import pandas as pd

    from dmtl.study.results import RunRecord, StudyResults


def frame_table(frame: pd.DataFrame, title: str | None = None, digits: int = 3) -> Table:
    """A pandas DataFrame as a rich table (floats to ``digits`` decimals, NaN as n/a)."""
    import pandas as pd

    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column])
        table.add_column(str(column), justify="right" if numeric else "left")
    for _, row in frame.iterrows():
        table.add_row(*(_cell(v, digits) for v in row.tolist()))
    return table


def _cell(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(metrics: Mapping[str, float | None], title: str) -> Table:
    """Flat ``task/metric`` values as a two-column table, per-label values left out."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if name.count("/") > 1:
            continue
        if value is None:
            text = "n/a"
        elif name.endswith("num_labelled"):
            text = str(int(value))
        else:
            text = f"{value:.4f}"
        table.add_row(name, text)
    return table


def study_table(results: StudyResults) -> Table:
    """The study's results table (:func:`dmtl.study.report.results_frame`) for the terminal.

    Best cells bold green, a negative-transfer verdict red (its column header says
    "negative transfer", so a verdict keeps only the tasks and their gains).
    """
    from dmtl.study.report import results_frame, task_header
    from dmtl.study.statistics import best_variants

    frame = results_frame(results)
    best = best_variants(results)
    table = Table(title=f"dmtl study: {results.study} (mean ± std over seeds)")
    table.add_column("variant", style="cyan", no_wrap=True)
    for task, info in results.tasks.items():
        table.add_column(f"{task}\n({info.primary_metric})", justify="right")
    table.add_column("negative transfer")
    for _, row in frame.iterrows():
        variant = str(row["variant"]).removesuffix(" (baseline)")
        cells: list[str | Text] = [str(row["variant"])]
        for task in results.tasks:
            style = "bold green" if variant in best[task] else ""
            cells.append(Text(str(row[task_header(results, task)]), style=style))
        verdict = str(row["negative transfer"])
        negative = verdict.startswith("negative transfer on: ")
        cells.append(Text(verdict.removeprefix("negative transfer on: "),
                          style="red" if negative else ""))
        table.add_row(*cells)
    return table


def print_study_table(console: Console, results: StudyResults) -> None:
    """The study's table and ranking: a rich table on a terminal; elsewhere (a log file, a
    pipe) the Markdown table at full width, never wrapped."""
    from dmtl.study.report import markdown_table, results_frame
    from dmtl.study.statistics import ranking

    ranks = ranking(results)
    order = ", ".join(f"{i}. {v} ({r:.2f})"
                      for i, (v, r) in enumerate(ranks["mean rank"].items(), start=1))
    line = f"ranking (mean rank over tasks): {order or 'n/a'}"
    if console.is_terminal:
        console.print(study_table(results))
        console.print(line, highlight=False, markup=False)
        return
    title = f"dmtl study: {results.study} (mean ± std over seeds)"
    console.file.write(f"{title}\n\n{markdown_table(results_frame(results))}\n\n{line}\n")
    console.file.flush()


class StudyProgressView(StudyObserver):
    """A study's progress on ``console``, as a context manager around the study.

    On a terminal: a rich progress bar over the runs (done / total, elapsed, time left,
    counting the epochs of the runs in flight) and one line per running run with its
    epoch. Elsewhere (a log file, a pipe): one plain line per finished run, with the
    elapsed time and an estimate of the time left. A failed run is printed in both cases.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.total = self.done = self.first_done = 0
        self.fractions: dict[str, float] = {}
        self.rows: dict[str, TaskID] = {}
        self.started = time.monotonic()
        self.overall: TaskID | None = None

    def __enter__(self) -> StudyProgressView:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def study_started(self, total: int, done: int) -> None:
        self.total, self.done = total, done
        self.started = time.monotonic()
        self.first_done = done
        if self.live:
            self.overall = self.progress.add_task(
                "runs", total=max(total, 1), completed=done, unit="runs"
            )

    def run_started(self, label: str) -> None:
        self.fractions[label] = 0.0
        if self.live:
            self.rows[label] = self.progress.add_task(
                f"  {label}", total=None, unit="epochs"
            )

    def epoch_finished(self, label: str, epoch: int, max_epochs: int) -> None:
        self.fractions[label] = epoch / max(max_epochs, 1)
        if self.live and label in self.rows:
            self.progress.update(self.rows[label], total=max_epochs, completed=epoch)
            self._update_overall()

    def run_finished(self, record: RunRecord) -> None:
        label = record.label()
        self.fractions.pop(label, None)
        self.done += 1
        if self.live:
            if label in self.rows:
                self.progress.remove_task(self.rows.pop(label))
            self._update_overall()
        if record.status == "failed":
            first = (record.error or "").splitlines()[0] if record.error else ""
            self.console.print(f"[red]FAILED {escape(label)}: {escape(first)}[/]")
        elif not self.live:
            self._plain_line(record)

    def _update_overall(self) -> None:
        if self.overall is not None:
            self.progress.update(
                self.overall, completed=self.done + sum(self.fractions.values())
            )

    def _plain_line(self, record: RunRecord) -> None:
        elapsed = time.monotonic() - self.started
        finished = self.done - self.first_done
        left = self.total - self.done
        eta = f", about {elapsed / finished * left:.0f} s left" if finished and left else ""
        width = len(str(self.total))
        wall = f" in {record.wall_s:.1f} s" if record.wall_s is not None else ""
        self.console.file.write(
            f"[{self.done:>{width}}/{self.total}] {record.label()}: done{wall} "
            f"(elapsed {elapsed:.0f} s{eta})\n"
        )
        self.console.file.flush()
