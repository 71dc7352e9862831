"""Early stopping that starts watching after ``min_epochs``, on a scripted validation metric;
the NVML variable unset while training where that is safe, and restored."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from torch.utils.data import DataLoader, TensorDataset

from dmtl.training.callbacks import NVML_CHECK, CheapCudaChecks, EarlyStoppingAfter


class ScriptedMetric(pl.LightningModule):
    """Logs ``val/score = scores[epoch]`` at every validation (1.0 after the script ends
    would be an improvement; the scripts below are long enough)."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return (self.weight * batch[0]).sum() ** 2

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/score", self.scores[self.current_epoch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _epochs_trained(scores: list[float], stopper: EarlyStopping) -> int:
    loader = DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)
    trainer = pl.Trainer(
        max_epochs=len(scores), callbacks=[stopper], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(ScriptedMetric(scores), loader, loader)
    return trainer.current_epoch


@pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning: few workers, few batches
def test_early_stopping_watches_from_min_epochs_on() -> None:
    # best at epoch 1, flat afterwards; patience 2
    flat = [1.0] + [0.5] * 11
    assert _epochs_trained(flat, EarlyStopping("val/score", patience=2, mode="max")) == 3
    # from epoch 5 on: 0.5 is the first score watched, then epochs 6 and 7 do not beat it
    assert _epochs_trained(flat, EarlyStoppingAfter("val/score", patience=2, mode="max",
                                                    min_epochs=5)) == 7
    # an improvement after min_epochs resets the patience: epochs 6 and 7 improve
    rising = [1.0, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7] + [0.5] * 5
    assert _epochs_trained(rising, EarlyStoppingAfter("val/score", patience=2, mode="max",
                                                      min_epochs=5)) == 9
    # min_epochs 0: Lightning's early stopping as it is
    assert _epochs_trained(flat, EarlyStoppingAfter("val/score", patience=2, mode="max")) == 3


class SeesTheVariable(ScriptedMetric):
    """Records ``PYTORCH_NVML_BASED_CUDA_CHECK`` at every training step."""

    def __init__(self) -> None:
        super().__init__([0.0] * 3)
        self.seen: list[str | None] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append(os.environ.get(NVML_CHECK))
        return super().training_step(batch, batch_idx)


def test_cheap_cuda_checks_unset_the_nvml_variable_while_training_only() -> None:
    assert os.environ.get(NVML_CHECK) == "1"  # import lightning set it
    module = SeesTheVariable()
    data = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=2)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[CheapCudaChecks()])
    trainer.fit(module, data)
    # safe on the CPU when no CUDA device is available; with one, CUDA is not initialised here
    unset = not torch.cuda.is_available() or torch.cuda.is_initialized()
    assert module.seen == [None if unset else "1"] * 2
    assert os.environ.get(NVML_CHECK) == "1"  # restored
