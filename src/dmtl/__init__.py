"""dmtl: multi-task learning from partially labelled data, through task relatedness.

Implements Kollias, Sharmanska & Zafeiriou, "Distribution Matching for Multi-Task
Learning of Classification Tasks" (AAAI 2024): tasks that share one network learn
from each other through a relatedness table ``R[c, j] = p(label j of B | class c of A)``,
by co-annotation (soft targets from the labels a sample has) and distribution
matching (each task's predictions, mapped through R, teach the other task).

The core is plain PyTorch and works in any training loop::

    objective = dmtl.Objective(tasks, edges, co_annotation="soft", distribution_matching=True)
    loss, terms = objective(model(x), labels)   # labels: dmtl.PartialLabels
    loss.backward()

A trained or exported model predicts per face on photos and videos::

    table = dmtl.Predictor("model.onnx").predict(["photo.jpg", "clip.mp4"])  # pandas

Layers (imports point down only): ``dmtl.core`` <- ``dmtl.knowledge`` <- ``dmtl.data``
<- ``dmtl.build`` (the config's one reader) <- ``dmtl.training`` (Lightning)
<- ``dmtl.study`` / ``dmtl.inference`` <- ``dmtl.cli``.
The names below are imported on first use, so ``import dmtl`` (and the command line)
starts without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmtl._lazy import lazy_exports
from dmtl._version import __version__

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "MISSING_CLASS", "BinarySetMetrics", "BinarySetTask", "CategoricalMetrics",
            "CategoricalTask", "MultiTaskMetrics", "MultiTaskModel", "Objective",
            "PartialLabels", "RegressionMetrics", "RegressionTask", "Relatedness",
            "RelatednessEstimator", "Task", "TaskLabels", "TaskMetrics",
            "co_annotation_losses", "collate_labels", "distribution_matching_losses",
            "forward_map", "inverse_binary_log_posterior", "inverse_categorical_map",
            "masked_binary_cross_entropy", "masked_cross_entropy", "predictions",
            "soft_cross_entropy", "task_from_dict", "binary_set_metrics",
            "categorical_metrics", "regression_metrics",
        ),
        "dmtl.core",
    ),
    **dict.fromkeys(("create_backbone", "list_backbones", "register_backbone"), "dmtl.backbones"),
    "Predictor": "dmtl.inference.faces",
    **dict.fromkeys(
        ("ConfigError", "DataError", "DmtlError", "OutputError", "RunError", "SpecError"),
        "dmtl.errors",
    ),
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from dmtl.backbones import create_backbone, list_backbones, register_backbone
    from dmtl.core import (
        MISSING_CLASS,
        BinarySetMetrics,
        BinarySetTask,
        CategoricalMetrics,
        CategoricalTask,
        MultiTaskMetrics,
        MultiTaskModel,
        Objective,
        PartialLabels,
        RegressionMetrics,
        RegressionTask,
        Relatedness,
        RelatednessEstimator,
        Task,
        TaskLabels,
        TaskMetrics,
        binary_set_metrics,
        categorical_metrics,
        co_annotation_losses,
        collate_labels,
        distribution_matching_losses,
        forward_map,
        inverse_binary_log_posterior,
        inverse_categorical_map,
        masked_binary_cross_entropy,
        masked_cross_entropy,
        predictions,
        regression_metrics,
        soft_cross_entropy,
        task_from_dict,
    )
    from dmtl.errors import ConfigError, DataError, DmtlError, OutputError, RunError, SpecError
    from dmtl.inference.faces import Predictor

__all__ = [
    "MISSING_CLASS",
    "BinarySetMetrics",
    "BinarySetTask",
    "CategoricalMetrics",
    "CategoricalTask",
    "ConfigError",
    "DataError",
    "DmtlError",
    "MultiTaskMetrics",
    "MultiTaskModel",
    "Objective",
    "OutputError",
    "PartialLabels",
    "Predictor",
    "RegressionMetrics",
    "RegressionTask",
    "Relatedness",
    "RelatednessEstimator",
    "RunError",
    "SpecError",
    "Task",
    "TaskLabels",
    "TaskMetrics",
    "__version__",
    "binary_set_metrics",
    "categorical_metrics",
    "co_annotation_losses",
    "collate_labels",
    "create_backbone",
    "distribution_matching_losses",
    "forward_map",
    "inverse_binary_log_posterior",
    "inverse_categorical_map",
    "list_backbones",
    "masked_binary_cross_entropy",
    "masked_cross_entropy",
    "predictions",
    "register_backbone",
    "regression_metrics",
    "soft_cross_entropy",
    "task_from_dict",
]
