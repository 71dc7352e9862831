"""dmtl.training: Lightning module and trainer, one run, the study, its results and report."""

from dmtl.training.experiment import Experiment, ExperimentError, build_experiment
from dmtl.training.module import MultiTaskModule, NonFiniteLossError
from dmtl.training.run import RunResult, run_training
from dmtl.training.study import run_study

__all__ = [
    "Experiment",
    "ExperimentError",
    "MultiTaskModule",
    "NonFiniteLossError",
    "RunResult",
    "build_experiment",
    "run_study",
    "run_training",
]
