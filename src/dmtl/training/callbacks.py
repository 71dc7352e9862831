"""Small Lightning callbacks: a run's progress for whoever started it, and early stopping
that starts watching after a minimum number of epochs."""

from __future__ import annotations

from collections.abc import Callable

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping


class EpochProgress(pl.Callback):
    """Calls ``report(epoch, max_epochs)`` at the end of every training epoch (1-based), on
    the first rank only."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self.report = report

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.report(trainer.current_epoch + 1, int(trainer.max_epochs or 0))


class EarlyStoppingAfter(EarlyStopping):
    """Lightning's :class:`EarlyStopping`, which starts watching the monitored metric only
    after ``min_epochs`` epochs: from then, training stops once the metric has not improved
    for ``patience`` validations.

    The first epochs' validation metrics, noisy where validation labels are few, neither
    end the run nor set the score that later ones must beat (the checkpoint callback
    still keeps the best of every epoch). Lightning's ``Trainer(min_epochs=...)`` differs:
    a stop decided before ``min_epochs`` sticks, and the run ends at ``min_epochs`` even
    if it has just improved.
    """

    def __init__(self, *args: object, min_epochs: int = 0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.min_epochs = min_epochs

    def _watching(self, trainer: pl.Trainer) -> bool:
        return trainer.current_epoch + 1 >= self.min_epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._watching(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._watching(trainer):
            super().on_validation_end(trainer, pl_module)


__all__ = ["EarlyStoppingAfter", "EpochProgress"]
