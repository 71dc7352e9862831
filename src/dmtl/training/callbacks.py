"""Small Lightning callbacks: a run's progress for whoever started it, early stopping
that starts watching after a minimum number of epochs, and CUDA checks that cost
microseconds instead of a library load per optimiser step."""

from __future__ import annotations

import os
from collections.abc import Callable

import lightning.pytorch as pl
import torch
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


NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
"""Set to ``1`` by ``import lightning``: ``torch.cuda.is_available()`` then asks NVML (it
loads ``libnvidia-ml`` and initialises it, every call) instead of the CUDA runtime, so
that asking does not initialise CUDA before a fork."""


class CheapCudaChecks(pl.Callback):
    """During training, ``torch.cuda.is_available()`` without NVML, where that is safe.

    Adam and AdamW ask whether CUDA is available at every step (to check CUDA-graph
    capture). Under Lightning's :data:`NVML_CHECK` each answer loads and initialises NVML:
    about 0.5 ms a step on a CPU-only machine, where a small model's whole step takes a
    few milliseconds. Once training has started the variable protects nothing when no
    CUDA device is available (the runtime's answer initialises nothing) or when CUDA is
    already initialised (the model is on the GPU); then it is unset until training ends,
    and restored. The answers, hence the results, are the same.
    """

    def __init__(self) -> None:
        self._saved: str | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = os.environ.get(NVML_CHECK)
        if value is None or (torch.cuda.is_available() and not torch.cuda.is_initialized()):
            return
        self._saved = value
        del os.environ[NVML_CHECK]

    def _restore(self) -> None:
        if self._saved is not None:
            os.environ[NVML_CHECK] = self._saved
            self._saved = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore()


__all__ = ["CheapCudaChecks", "EarlyStoppingAfter", "EpochProgress"]
