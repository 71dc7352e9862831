"""dmtl.training: the Lightning module, the trainer and one training run."""

from dmtl.training.module import MultiTaskModule
from dmtl.training.run import RunResult, run_training

__all__ = ["MultiTaskModule", "RunResult", "run_training"]
