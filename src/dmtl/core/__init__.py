"""dmtl.core: task kinds, partial labels, relatedness, losses, objective, model and metrics.

Pure PyTorch (plus torchmetrics and TorchJD): usable from any training loop. The names
below are imported on first use, so that a module needing only tasks and labels (the data
pipeline) does not load torchmetrics and TorchJD.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmtl._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "backward_tasks": "dmtl.core.aggregation",
    "build_aggregator": "dmtl.core.aggregation",
    "co_annotation_losses": "dmtl.core.coannotation",
    "RelatednessEstimator": "dmtl.core.estimation",
    "HeadSpec": "dmtl.core.heads",
    "MISSING_CLASS": "dmtl.core.labels",
    "PartialLabels": "dmtl.core.labels",
    "TaskLabels": "dmtl.core.labels",
    "collate_labels": "dmtl.core.labels",
    "empty_labels": "dmtl.core.labels",
    "encode_sample": "dmtl.core.labels",
    "concordance_loss": "dmtl.core.losses",
    "masked_binary_cross_entropy": "dmtl.core.losses",
    "masked_cross_entropy": "dmtl.core.losses",
    "masked_squared_error": "dmtl.core.losses",
    "soft_cross_entropy": "dmtl.core.losses",
    "categorical_posterior": "dmtl.core.maps",
    "forward_map": "dmtl.core.maps",
    "frequency_prior": "dmtl.core.maps",
    "inverse_binary_log_posterior": "dmtl.core.maps",
    "inverse_categorical_map": "dmtl.core.maps",
    "distribution_matching_losses": "dmtl.core.matching",
    "BinarySetMetrics": "dmtl.core.synced_metrics",
    "CategoricalMetrics": "dmtl.core.synced_metrics",
    "MultiTaskMetrics": "dmtl.core.metrics",
    "RegressionMetrics": "dmtl.core.synced_metrics",
    "TaskMetrics": "dmtl.core.synced_metrics",
    "binary_set_metrics": "dmtl.core.metrics",
    "categorical_metrics": "dmtl.core.metrics",
    "regression_metrics": "dmtl.core.metrics",
    "MultiTaskModel": "dmtl.core.model",
    "predictions": "dmtl.core.model",
    "Objective": "dmtl.core.objective",
    "Relatedness": "dmtl.core.relatedness",
    "uniform_prior": "dmtl.core.relatedness",
    "TASK_KINDS": "dmtl.core.tasks",
    "BinarySetTask": "dmtl.core.tasks",
    "CategoricalTask": "dmtl.core.tasks",
    "RegressionTask": "dmtl.core.tasks",
    "Task": "dmtl.core.tasks",
    "task_from_dict": "dmtl.core.tasks",
    "DynamicWeightAverage": "dmtl.core.weighting",
    "FixedWeighting": "dmtl.core.weighting",
    "UncertaintyWeighting": "dmtl.core.weighting",
    "build_weighting": "dmtl.core.weighting",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
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
        MultiTaskMetrics,
        binary_set_metrics,
        categorical_metrics,
        regression_metrics,
    )
    from dmtl.core.model import MultiTaskModel, predictions
    from dmtl.core.objective import Objective
    from dmtl.core.relatedness import Relatedness, uniform_prior
    from dmtl.core.synced_metrics import (
        BinarySetMetrics,
        CategoricalMetrics,
        RegressionMetrics,
        TaskMetrics,
    )
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
