"""dmtl: multi-task learning of classification tasks from partially labelled data.

Implements Kollias, Sharmanska & Zafeiriou, "Distribution Matching for Multi-Task
Learning of Classification Tasks" (AAAI 2024): tasks that share one network learn
from each other through a relatedness table ``R[c, j] = p(label j of B | class c of A)``,
by co-annotation (soft targets from the labels a sample has) and distribution
matching (each task's predictions, mapped through R, teach the other task).

The core is plain PyTorch and works in any training loop::

    objective = dmtl.Objective(tasks, edges, co_annotation="soft", distribution_matching=True)
    loss, terms = objective(model(x), labels)   # labels: dmtl.PartialLabels
    loss.backward()

Layers (imports point down only): ``dmtl.core`` (tasks, labels, relatedness, losses,
objective, model, metrics) <- ``dmtl.data`` (manifests, sources, multi-source batches,
regimes, dataset readers) <- ``dmtl.training`` (Lightning, study, report) <- ``dmtl.cli``.
"""

from dmtl.backbones import create_backbone, list_backbones, register_backbone
from dmtl.core import (
    MISSING_CLASS,
    BinarySetTask,
    CategoricalTask,
    MultiTaskMetrics,
    MultiTaskModel,
    Objective,
    PartialLabels,
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
    predict_proba,
    soft_cross_entropy,
)
from dmtl.errors import SpecError

__version__ = "0.1.0"

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
    "predict_proba",
    "register_backbone",
    "soft_cross_entropy",
]
