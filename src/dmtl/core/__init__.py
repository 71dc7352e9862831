"""dmtl.core: tasks, partial labels, relatedness, losses, objective, model and metrics.

Pure PyTorch (plus torchmetrics): usable from any training loop.
"""

from dmtl.core.estimation import RelatednessEstimator
from dmtl.core.labels import (
    MISSING_CLASS,
    PartialLabels,
    TaskLabels,
    collate_labels,
    empty_labels,
    encode_sample,
)
from dmtl.core.losses import (
    co_annotation_losses,
    distribution_matching_losses,
    hard_binary_targets,
    hard_categorical_targets,
    masked_binary_cross_entropy,
    masked_cross_entropy,
    soft_cross_entropy,
)
from dmtl.core.metrics import (
    MultiTaskMetrics,
    TaskMetrics,
    binary_set_metrics,
    categorical_metrics,
    primary_metric,
)
from dmtl.core.model import MultiTaskModel, predict_proba
from dmtl.core.objective import Objective
from dmtl.core.relatedness import (
    Relatedness,
    categorical_posterior,
    forward_map,
    frequency_prior,
    inverse_binary_log_posterior,
    inverse_categorical_map,
    uniform_prior,
)
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.errors import SpecError

__all__ = [
    "MISSING_CLASS",
    "BinarySetTask",
    "CategoricalTask",
    "MultiTaskMetrics",
    "MultiTaskModel",
    "Objective",
    "PartialLabels",
    "Relatedness",
    "RelatednessEstimator",
    "SpecError",
    "Task",
    "TaskLabels",
    "TaskMetrics",
    "binary_set_metrics",
    "categorical_metrics",
    "categorical_posterior",
    "co_annotation_losses",
    "collate_labels",
    "distribution_matching_losses",
    "empty_labels",
    "encode_sample",
    "forward_map",
    "frequency_prior",
    "hard_binary_targets",
    "hard_categorical_targets",
    "inverse_binary_log_posterior",
    "inverse_categorical_map",
    "masked_binary_cross_entropy",
    "masked_cross_entropy",
    "predict_proba",
    "primary_metric",
    "soft_cross_entropy",
    "uniform_prior",
]
