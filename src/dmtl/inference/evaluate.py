"""``dmtl evaluate``: a trained model's metrics on the test (or validation) split of its data.

The network is loaded without Lightning (:func:`~dmtl.build.checkpoint.load_trained`) and
run over the split's batches in evaluation mode, under ``torch.inference_mode``, into the
same :class:`~dmtl.core.metrics.MultiTaskMetrics` the training module evaluates with (the
same kernels), so the values equal those of the run's own evaluation (``metrics.json``).
It evaluates in one process, so it sums them without torchmetrics
(``synchronised=False``), whose import (torchvision, SciPy) would take seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dmtl.build.checkpoint import TrainedModel, load_trained
from dmtl.build.data import Experiment, build_experiment
from dmtl.build.loaders import eval_loader
from dmtl.core.metrics import MAX_PER_OUTPUT_METRICS, MetricValue, MultiTaskMetrics
from dmtl.errors import DataError


def evaluation_device() -> torch.device:
    """The first GPU when there is one, else the CPU (as Lightning's ``accelerator="auto"``)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate_checkpoint(checkpoint: Path, split: str = "test") -> dict[str, MetricValue]:
    """``{"<task>/<metric>": value}`` of ``checkpoint`` on ``split`` (``test`` or ``val``)."""
    trained = load_trained(checkpoint)
    return evaluate_trained(trained, build_experiment(trained.config), split, str(checkpoint))


def evaluate_trained(
    trained: TrainedModel, experiment: Experiment, split: str = "test", name: str = "the model"
) -> dict[str, MetricValue]:
    """``{"<task>/<metric>": value}`` of a loaded model on ``split`` of ``experiment``."""
    loader = eval_loader(experiment, split)
    if loader is None:
        raise DataError(f"the config of {name} has no {split} split")
    device = evaluation_device()
    model = trained.model.to(device).eval()
    metrics = MultiTaskMetrics(
        trained.tasks, per_output=MAX_PER_OUTPUT_METRICS, synchronised=False
    ).to(device)
    with torch.inference_mode():
        for batch in loader:
            moved = batch.to(device)
            metrics.update(model(moved.x), moved.labels)
        return metrics.compute_flat()


__all__ = ["evaluate_checkpoint", "evaluate_trained", "evaluation_device"]
