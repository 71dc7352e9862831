"""A study's progress on the terminal (a progress bar) or in a log (a line per run)."""

from __future__ import annotations

import time
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

from dmtl.study.observer import StudyObserver

if TYPE_CHECKING:
    from dmtl.study.results import RunRecord


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
