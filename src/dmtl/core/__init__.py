"""dmtl.core: task kinds, partial labels, relatedness, losses, objective, model and metrics.

Pure PyTorch (plus torchmetrics): usable from any training loop.
"""

from dmtl.core.aggregation import backward_tasks, build_aggregator
from dmtl.core.coannotation import co_annotation_losses
from dmtl.core.estimation import RelatednessEstimator
from dmtl.core.heads import HeadSpec
from dmtl.core.labels import (
    MISSING_CLASS,
    PartialLabels,
    TaskLabels,
    collate_labels,
    empty_labels,
    encode_sample,
)
from dmtl.core.losses import (
    concordance_loss,
    masked_binary_cross_entropy,
    masked_cross_entropy,
    masked_squared_error,
    soft_cross_entropy,
)
from dmtl.core.maps import (
    categorical_posterior,
    forward_map,
    frequency_prior,
    inverse_binary_log_posterior,
    inverse_categorical_map,
)
from dmtl.core.matching import distribution_matching_losses
from dmtl.core.metrics import (
    BinarySetMetrics,
    CategoricalMetrics,
    MultiTaskMetrics,
    RegressionMetrics,
    TaskMetrics,
    binary_set_metrics,
    categorical_metrics,
    regression_metrics,
)
from dmtl.core.model import MultiTaskModel, predictions
from dmtl.core.objective import Objective
from dmtl.core.relatedness import Relatedness, uniform_prior
from dmtl.core.tasks import (
    TASK_KINDS,
    BinarySetTask,
    CategoricalTask,
    RegressionTask,
    Task,
    task_from_dict,
)
from dmtl.core.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    UncertaintyWeighting,
    build_weighting,
)

__all__ = [
    "MISSING_CLASS",
    "TASK_KINDS",
    "BinarySetMetrics",
    "BinarySetTask",
    "CategoricalMetrics",
    "CategoricalTask",
    "DynamicWeightAverage",
    "FixedWeighting",
    "HeadSpec",
    "MultiTaskMetrics",
    "MultiTaskModel",
    "Objective",
    "PartialLabels",
    "RegressionMetrics",
    "RegressionTask",
    "Relatedness",
    "RelatednessEstimator",
    "Task",
    "TaskLabels",
    "TaskMetrics",
    "UncertaintyWeighting",
    "backward_tasks",
    "binary_set_metrics",
    "build_aggregator",
    "build_weighting",
    "categorical_metrics",
    "categorical_posterior",
    "co_annotation_losses",
    "collate_labels",
    "concordance_loss",
    "distribution_matching_losses",
    "empty_labels",
    "encode_sample",
    "forward_map",
    "frequency_prior",
    "inverse_binary_log_posterior",
    "inverse_categorical_map",
    "masked_binary_cross_entropy",
    "masked_cross_entropy",
    "masked_squared_error",
    "predictions",
    "regression_metrics",
    "soft_cross_entropy",
    "task_from_dict",
    "uniform_prior",
]
