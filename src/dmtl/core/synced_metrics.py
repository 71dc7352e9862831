"""One torchmetrics ``Metric`` per task kind: a :class:`~dmtl.core.metrics.MetricKernel`'s
statistics kept as states with ``dist_reduce_fx="sum"`` (summed over DDP processes).

The formulas, names and kernels are in :mod:`dmtl.core.metrics`; this module only adds
the torchmetrics accumulation that training (``task.metric()``, the module's
:class:`~dmtl.core.metrics.MultiTaskMetrics`) uses. Importing it imports torchmetrics,
whose package root imports torchvision and SciPy: a command that evaluates in one process
accumulates in :class:`~dmtl.core.metrics.SummedMetrics` instead (the same values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchmetrics import Metric

from dmtl.core.metrics import (
    BinarySetKernel,
    CategoricalKernel,
    KernelTotals,
    MetricKernel,
    RegressionKernel,
)

if TYPE_CHECKING:
    from dmtl.core.tasks import BinarySetTask, CategoricalTask, RegressionTask


class TaskMetrics(KernelTotals, Metric):
    """Accumulating metrics of one task (torchmetrics: states summed over DDP processes).

    ``update(logits, labels)`` adds a batch; ``compute()`` returns ``{key: value}`` over
    everything seen since the last ``reset()``. Build one with ``task.metric()``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, kernel: MetricKernel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel = kernel
        for name, zero in zip(kernel.fields, kernel.zeros(), strict=True):
            self.add_state(name, default=zero, dist_reduce_fx="sum")

    @property
    def per_output(self) -> bool:
        return self.kernel.per_output


class CategoricalMetrics(TaskMetrics):
    """Accuracy, macro-F1 and per-class F1 of a categorical task.

    >>> import torch
    >>> from dmtl.core.labels import TaskLabels
    >>> from dmtl.core.tasks import CategoricalTask
    >>> metric = CategoricalTask("d", ["0", "1"]).metric()
    >>> metric.update(torch.tensor([[2.0, 0.0]]), TaskLabels(torch.tensor([0]),
    ...                                                       torch.tensor([True])))
    >>> metric.compute()["accuracy"]
    1.0
    """

    def __init__(
        self, task: CategoricalTask, per_output: bool = True, zero_division: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(CategoricalKernel(task, per_output, zero_division), **kwargs)


class BinarySetMetrics(TaskMetrics):
    """Mean per-label F1, accuracy and per-label F1 at ``threshold`` of a binary-set task.

    >>> import torch
    >>> from dmtl.core.labels import TaskLabels
    >>> from dmtl.core.tasks import BinarySetTask
    >>> metric = BinarySetTask("au", ["AU1"]).metric()
    >>> observed = torch.tensor([[True]])
    >>> metric.update(torch.tensor([[2.0]]), TaskLabels(torch.tensor([[1.0]]), observed))
    >>> metric.update(torch.tensor([[2.0]]), TaskLabels(torch.tensor([[0.0]]), observed))
    >>> result = metric.compute()
    >>> result["accuracy"], result["f1_mean"], result["num_labelled"]
    (0.5, 0.6666666666666666, 2)
    """

    def __init__(
        self, task: BinarySetTask, per_output: bool = True, zero_division: float | None = None,
        threshold: float = 0.5, **kwargs: Any,
    ) -> None:
        kernel = BinarySetKernel(task, per_output, zero_division, threshold)
        super().__init__(kernel, **kwargs)


class RegressionMetrics(TaskMetrics):
    """CCC per target, mean CCC and MSE of a regression task (moments in float64).

    >>> import torch
    >>> from dmtl.core.labels import TaskLabels
    >>> from dmtl.core.tasks import RegressionTask
    >>> metric = RegressionTask("va", ["valence"]).metric()
    >>> y = torch.tensor([[0.1], [0.5], [-0.3]])
    >>> metric.update(y, TaskLabels(y, torch.ones(3, 1, dtype=torch.bool)))
    >>> metric.compute()["ccc_mean"]
    1.0
    """

    def __init__(self, task: RegressionTask, per_output: bool = True, **kwargs: Any) -> None:
        super().__init__(RegressionKernel(task, per_output), **kwargs)


__all__ = ["BinarySetMetrics", "CategoricalMetrics", "RegressionMetrics", "TaskMetrics"]
