"""Small Lightning callbacks that report a run's progress to whoever started it."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl


class EpochProgress(pl.Callback):
    """Calls ``report(epoch, max_epochs)`` at the end of every training epoch (1-based), on
    the first rank only."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self.report = report

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.report(trainer.current_epoch + 1, int(trainer.max_epochs or 0))


__all__ = ["EpochProgress"]
