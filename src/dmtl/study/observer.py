"""What a running study reports (no torch here: the command line imports it at start-up)."""

from __future__ import annotations

from dmtl.study.results import RunRecord


class StudyObserver:
    """What a study reports as it goes; every method here does nothing.

    The command line draws a progress bar from it (:mod:`dmtl.cli.progress`). Runs are
    named by their label (``mtl+ca seed 0``, ``single_task[digit] seed 1``).
    """

    def study_started(self, total: int, done: int) -> None:
        """``total`` runs planned, ``done`` of them already finished (a resume)."""

    def run_started(self, label: str) -> None:
        """A run begins training."""

    def epoch_finished(self, label: str, epoch: int, max_epochs: int) -> None:
        """A run finished its ``epoch``-th epoch (1-based) of at most ``max_epochs``."""

    def run_finished(self, record: RunRecord) -> None:
        """A run is done or failed (``record.status``)."""


__all__ = ["StudyObserver"]
