"""Masked per-task classification metrics, as functions and as torchmetrics modules.

Every metric is computed from four per-output counts accumulated over the
*observed* entries only (the masks of :class:`~dmtl.core.labels.TaskLabels`):
``tp``, ``fp``, ``fn`` and ``observed``, plus ``num_labelled``, the number of
samples with at least one observed entry. A categorical task is counted
one-vs-rest, so that class ``c`` gets ``tp_c = #(pred = c, y = c)``,
``fp_c = #(pred = c, y != c)``, ``fn_c = #(pred != c, y = c)``.

Predictions: categorical ``argmax_c z_c``; binary set ``sigmoid(z_j) > threshold``
(default 0.5, strict as in torchmetrics). Inputs are always logits.

Formulas::

    F1_j          = 2 tp_j / (2 tp_j + fp_j + fn_j)      (None where 2 tp_j + fp_j + fn_j = 0)
    categorical:  accuracy = sum_c tp_c / num_labelled   (micro)
                  f1_macro = mean of the defined F1_c
    binary set:   accuracy = (sum_j observed_j - fp_j - fn_j) / sum_j observed_j
                  f1_mean  = mean of the defined F1_j    (the action-unit convention)

Nothing observed gives ``None`` ("n/a"), never 0: a task with no labelled
sample has every metric ``None``; a label never observed, or a class that was
neither a target nor predicted, has F1 ``None`` and is left out of the mean
(torchmetrics' macro average does the same). Pass ``zero_division=0.0`` to
score an *observed* output with ``2tp + fp + fn = 0`` as 0 instead (the
scikit-learn default); never-observed binary labels stay ``None``.

Metric names (stable; the keys of every result dict):

=================  ==========================  ===================================
task kind          key                         meaning
=================  ==========================  ===================================
both               ``accuracy``                see above
categorical        ``f1_macro``                macro-F1 over classes
categorical        ``f1/<class name>``         per-class F1
binary set         ``f1_mean``                 mean per-label F1
binary set         ``f1/<label name>``         per-label F1
both               ``num_labelled``            samples with an observed entry (int)
=================  ==========================  ===================================

Flat names prefix the task: ``<task>/<key>``, e.g. ``digit/accuracy``,
``au/f1_mean``, ``au/f1/AU12``. Task names cannot contain ``/``, so the text
before the first ``/`` is always the task (a class name may contain ``/``).
The primary metric of a task (the study's headline number) is ``accuracy``
for categorical tasks and ``f1_mean`` for binary-set tasks (:func:`primary_metric`).

The modules keep the counts as torchmetrics states with ``dist_reduce_fx="sum"``,
so ``compute()`` under DDP sums them over processes before deriving the metrics.

>>> from dmtl.core.labels import TaskLabels
>>> from dmtl.core.tasks import CategoricalTask
>>> digit = CategoricalTask("digit", ["0", "1"])
>>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
>>> labels = TaskLabels(torch.tensor([0, 0, 1]), torch.tensor([True, True, False]))
>>> result = categorical_metrics(logits, labels, digit)    # predictions 0, 1; targets 0, 0
>>> result["accuracy"], result["f1/0"], result["f1/1"], result["f1_macro"]
(0.5, 0.6666666666666666, 0.0, 0.3333333333333333)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from dmtl.core.labels import PartialLabels, TaskLabels
from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task, TaskKind, check_unique_task_names

MetricValue = float | int | None
"""A metric value: a float, an int count (``num_labelled``), or ``None`` for "n/a"."""

PRIMARY_METRIC: dict[TaskKind, str] = {"categorical": "accuracy", "binary_set": "f1_mean"}
"""The headline metric of each task kind."""

_V = TypeVar("_V")


def primary_metric(task: Task) -> str:
    """Key of the task's headline metric: ``accuracy`` (categorical) or ``f1_mean`` (binary set).

    >>> from dmtl.core.tasks import BinarySetTask
    >>> primary_metric(BinarySetTask("au", ["AU1"]))
    'f1_mean'
    """
    return PRIMARY_METRIC[task.kind]


def metric_names(task: Task, per_output: bool = True) -> list[str]:
    """The keys a task's result dict has, in order (see the module docstring).

    >>> metric_names(CategoricalTask("digit", ["0", "1"]))
    ['accuracy', 'f1_macro', 'f1/0', 'f1/1', 'num_labelled']
    """
    mean_f1 = "f1_macro" if task.kind == "categorical" else "f1_mean"
    per = [f"f1/{name}" for name in task.names] if per_output else []
    return ["accuracy", mean_f1, *per, "num_labelled"]


def flatten_metrics(
    results: Mapping[str, Mapping[str, _V]], skip_missing: bool = False
) -> dict[str, _V]:
    """``{task: {key: value}} -> {"task/key": value}``; ``skip_missing`` drops ``None`` values.

    >>> flatten_metrics({"au": {"f1_mean": 0.5, "f1/AU1": None}}, skip_missing=True)
    {'au/f1_mean': 0.5}
    """
    return {
        f"{task}/{key}": value
        for task, values in results.items()
        for key, value in values.items()
        if not (skip_missing and value is None)
    }


class Counts(NamedTuple):
    """Per-output counts over observed entries; ``num_labelled`` is a 0-dim tensor."""

    tp: Tensor
    fp: Tensor
    fn: Tensor
    observed: Tensor
    num_labelled: Tensor


def _check_inputs(logits: Tensor, labels: TaskLabels, task: Task) -> None:
    if logits.dim() != 2 or logits.shape[1] != task.num_outputs:
        raise ValueError(
            f"task {task.name!r}: expected logits of shape (N, {task.num_outputs}), "
            f"got {tuple(logits.shape)}"
        )
    expected_mask_dim = 1 if task.kind == "categorical" else 2
    if labels.mask.dim() != expected_mask_dim:
        raise ValueError(
            f"task {task.name!r}: a {task.kind} task needs a {expected_mask_dim}-d mask, "
            f"got shape {tuple(labels.mask.shape)}"
        )
    if labels.mask.shape[0] != logits.shape[0]:
        raise ValueError(
            f"task {task.name!r}: {logits.shape[0]} rows of logits but "
            f"{labels.mask.shape[0]} rows of labels"
        )


def categorical_counts(logits: Tensor, labels: TaskLabels, task: CategoricalTask) -> Counts:
    """One-vs-rest counts of a categorical task over its labelled samples (no host sync)."""
    _check_inputs(logits, labels, task)
    num_classes = task.num_classes
    mask = labels.mask.to(logits.device)
    target = labels.target.to(logits.device).long()
    pred = logits.argmax(dim=1)
    weight = mask.long()
    correct = (pred == target).long() * weight
    zeros = torch.zeros(num_classes, dtype=torch.long, device=logits.device)
    tp = zeros.scatter_add(0, target, correct)
    predicted = zeros.scatter_add(0, pred, weight)
    actual = zeros.scatter_add(0, target, weight)
    num_labelled = weight.sum()
    return Counts(tp, predicted - tp, actual - tp, num_labelled.expand(num_classes), num_labelled)


def binary_set_counts(
    logits: Tensor, labels: TaskLabels, task: BinarySetTask, threshold: float = 0.5
) -> Counts:
    """Per-label counts of a binary-set task over its observed entries (no host sync)."""
    _check_inputs(logits, labels, task)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    mask = labels.mask.to(logits.device)
    pred = torch.sigmoid(logits.float()) > threshold
    target = labels.target.to(logits.device) >= 0.5
    tp = (pred & target & mask).sum(dim=0)
    fp = (pred & ~target & mask).sum(dim=0)
    fn = (~pred & target & mask).sum(dim=0)
    return Counts(tp, fp, fn, mask.sum(dim=0), mask.any(dim=1).sum())


def metrics_from_counts(
    task: Task, counts: Counts, per_output: bool = True, zero_division: float | None = None
) -> dict[str, MetricValue]:
    """Derive the metrics of the module docstring from (possibly accumulated) counts."""
    tp, fp, fn, observed = (c.detach().cpu().long().tolist() for c in counts[:4])
    num_labelled = int(counts.num_labelled)
    f1: list[float | None] = []
    for tp_j, fp_j, fn_j, observed_j in zip(tp, fp, fn, observed, strict=True):
        denominator = 2 * tp_j + fp_j + fn_j
        if denominator > 0:
            f1.append(2 * tp_j / denominator)
        elif observed_j > 0 and zero_division is not None:
            f1.append(float(zero_division))
        else:
            f1.append(None)
    defined = [v for v in f1 if v is not None]
    mean_f1 = sum(defined) / len(defined) if defined else None
    accuracy: float | None
    if task.kind == "categorical":
        accuracy = sum(tp) / num_labelled if num_labelled > 0 else None
    else:
        total = sum(observed)
        accuracy = (total - sum(fp) - sum(fn)) / total if total > 0 else None
    if num_labelled == 0:
        mean_f1, f1 = None, [None] * len(f1)
    out: dict[str, MetricValue] = {"accuracy": accuracy}
    out["f1_macro" if task.kind == "categorical" else "f1_mean"] = mean_f1
    if per_output:
        out.update({f"f1/{name}": value for name, value in zip(task.names, f1, strict=True)})
    out["num_labelled"] = num_labelled
    return out


def categorical_metrics(
    logits: Tensor,
    labels: TaskLabels,
    task: CategoricalTask,
    per_class: bool = True,
    zero_division: float | None = None,
) -> dict[str, MetricValue]:
    """Accuracy, macro-F1 and per-class F1 of a categorical task over its labelled samples.

    >>> task = CategoricalTask("digit", ["0", "1", "2"])
    >>> nothing = TaskLabels(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))
    >>> categorical_metrics(torch.zeros(2, 3), nothing, task, per_class=False)
    {'accuracy': None, 'f1_macro': None, 'num_labelled': 0}
    """
    if not isinstance(task, CategoricalTask):
        raise TypeError(f"task {task.name!r} is not categorical")
    counts = categorical_counts(logits, labels, task)
    return metrics_from_counts(task, counts, per_class, zero_division)


def binary_set_metrics(
    logits: Tensor,
    labels: TaskLabels,
    task: BinarySetTask,
    threshold: float = 0.5,
    per_label: bool = True,
    zero_division: float | None = None,
) -> dict[str, MetricValue]:
    """Per-label F1 at ``threshold``, their mean, and accuracy over the observed entries.

    >>> task = BinarySetTask("au", ["AU1", "AU2"])
    >>> logits = torch.tensor([[1.0, -1.0], [1.0, 1.0]])      # predictions [[1, 0], [1, 1]]
    >>> target = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    >>> mask = torch.tensor([[True, False], [True, False]])   # AU2 never observed
    >>> result = binary_set_metrics(logits, TaskLabels(target, mask), task)
    >>> result["accuracy"], result["f1/AU1"], result["f1/AU2"], result["f1_mean"]
    (0.5, 0.6666666666666666, None, 0.6666666666666666)
    """
    if not isinstance(task, BinarySetTask):
        raise TypeError(f"task {task.name!r} is not a binary-set task")
    counts = binary_set_counts(logits, labels, task, threshold)
    return metrics_from_counts(task, counts, per_label, zero_division)


class TaskMetrics(Metric):
    """Accumulating metrics of one task (a torchmetrics ``Metric``: DDP-synchronised counts).

    ``update(logits, labels)`` adds a batch; ``compute()`` returns the dict of
    :func:`categorical_metrics` / :func:`binary_set_metrics` over everything
    seen since the last ``reset()``. Extra keyword arguments go to ``Metric``.

    >>> metric = TaskMetrics(BinarySetTask("au", ["AU1"]))
    >>> observed = torch.tensor([[True]])
    >>> metric.update(torch.tensor([[2.0]]), TaskLabels(torch.tensor([[1.0]]), observed))
    >>> metric.update(torch.tensor([[2.0]]), TaskLabels(torch.tensor([[0.0]]), observed))
    >>> result = metric.compute()
    >>> result["accuracy"], result["f1_mean"], result["num_labelled"]
    (0.5, 0.6666666666666666, 2)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    tp: Tensor
    fp: Tensor
    fn: Tensor
    observed: Tensor
    num_labelled: Tensor

    def __init__(
        self,
        task: Task,
        threshold: float = 0.5,
        per_output: bool = True,
        zero_division: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(task, (CategoricalTask, BinarySetTask)):
            raise TypeError(f"expected a CategoricalTask or BinarySetTask, got {task!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        self.task = task
        self.threshold = threshold
        self.per_output = per_output
        self.zero_division = zero_division
        for name in ("tp", "fp", "fn", "observed"):
            self.add_state(
                name, default=torch.zeros(task.num_outputs, dtype=torch.long), dist_reduce_fx="sum"
            )
        self.add_state(
            "num_labelled", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, logits: Tensor, labels: TaskLabels) -> None:
        """Add the counts of one batch (``logits`` of shape ``(N, num_outputs)``)."""
        logits = logits.detach()
        if isinstance(self.task, CategoricalTask):
            counts = categorical_counts(logits, labels, self.task)
        else:
            assert isinstance(self.task, BinarySetTask)
            counts = binary_set_counts(logits, labels, self.task, self.threshold)
        device = self.tp.device
        self.tp += counts.tp.to(device)
        self.fp += counts.fp.to(device)
        self.fn += counts.fn.to(device)
        self.observed += counts.observed.to(device)
        self.num_labelled += counts.num_labelled.to(device)

    def compute(self) -> dict[str, MetricValue]:
        """Metrics over the accumulated counts (see the module docstring for the keys)."""
        counts = Counts(self.tp, self.fp, self.fn, self.observed, self.num_labelled)
        return metrics_from_counts(self.task, counts, self.per_output, self.zero_division)

    def metric_names(self) -> list[str]:
        """Keys of :meth:`compute`'s result."""
        return metric_names(self.task, self.per_output)


class MultiTaskMetrics(nn.Module):
    """One :class:`TaskMetrics` per task, fed from ``{task: logits}`` and :class:`PartialLabels`.

    A task absent from ``labels`` counts as unlabelled in that batch; a task
    absent from ``logits`` is not updated; logits of unknown tasks are ignored.
    ``compute()`` gives ``{task: {key: value}}`` and :meth:`compute_flat`
    ``{"task/key": value}``. Every process must call ``compute()`` under DDP
    (it synchronises each task's counts).

    >>> from dmtl.core.labels import collate_labels
    >>> tasks = [CategoricalTask("digit", ["0", "1"]), BinarySetTask("au", ["AU1", "AU2"])]
    >>> metrics = MultiTaskMetrics(tasks, per_output=False)
    >>> labels = collate_labels(tasks, [{"digit": 1}, {"au": {"AU1": 1}}])
    >>> metrics.update({"digit": torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
    ...                 "au": torch.tensor([[0.0, 0.0], [1.0, -1.0]])}, labels)
    >>> flat = metrics.compute_flat()
    >>> list(flat)[:4]
    ['digit/accuracy', 'digit/f1_macro', 'digit/num_labelled', 'au/accuracy']
    >>> flat["digit/accuracy"], flat["au/f1_mean"], flat["au/num_labelled"]
    (1.0, 1.0, 1)
    >>> metrics.primary_names()
    {'digit': 'digit/accuracy', 'au': 'au/f1_mean'}
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        threshold: float = 0.5,
        per_output: bool | int = True,
        zero_division: float | None = None,
        **metric_kwargs: Any,
    ) -> None:
        super().__init__()
        self.tasks: dict[str, Task] = check_unique_task_names(tasks)

        def wanted(task: Task) -> bool:
            # An int keeps per-class/per-label values only for tasks with at most that many
            # outputs (10,177 per-identity F1 values are rarely worth logging).
            if isinstance(per_output, bool):
                return per_output
            return task.num_outputs <= per_output

        # A ModuleList, not a ModuleDict: task names need not be valid attribute names.
        self.task_metrics = nn.ModuleList(
            TaskMetrics(task, threshold, wanted(task), zero_division, **metric_kwargs)
            for task in self.tasks.values()
        )
        self._position = {name: i for i, name in enumerate(self.tasks)}

    def __getitem__(self, task: str) -> TaskMetrics:
        metric = self.task_metrics[self._position[task]]
        assert isinstance(metric, TaskMetrics)
        return metric

    def update(self, logits: Mapping[str, Tensor], labels: PartialLabels) -> None:
        """Add a batch: ``logits[task]`` of shape ``(N, num_outputs)``, labels of N samples."""
        for name, task in self.tasks.items():
            if name not in logits:
                continue
            task_logits = logits[name]
            task_labels = labels[name] if name in labels else _unobserved(task, task_logits)
            self[name].update(task_logits, task_labels)

    def compute(self) -> dict[str, dict[str, MetricValue]]:
        """``{task: {key: value}}`` over everything since the last reset.

        A task not updated since then is well defined here (every metric ``None``),
        so torchmetrics' "compute before update" warning is silenced.
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The ``compute`` method of metric")
            return {name: self[name].compute() for name in self.tasks}

    def compute_flat(self, skip_missing: bool = False) -> dict[str, MetricValue]:
        """``{"task/key": value}``; ``skip_missing`` drops ``None`` (e.g. before logging)."""
        return flatten_metrics(self.compute(), skip_missing)

    def reset(self) -> None:
        for name in self.tasks:
            self[name].reset()

    def primary_names(self) -> dict[str, str]:
        """``{task: flat name of its primary metric}``."""
        return {name: f"{name}/{primary_metric(task)}" for name, task in self.tasks.items()}

    def forward(self, logits: Mapping[str, Tensor], labels: PartialLabels) -> None:
        """Same as :meth:`update`."""
        self.update(logits, labels)


def _unobserved(task: Task, logits: Tensor) -> TaskLabels:
    shape = (
        (logits.shape[0],) if task.kind == "categorical" else (logits.shape[0], task.num_outputs)
    )
    dtype = torch.long if task.kind == "categorical" else torch.float32
    return TaskLabels(
        torch.zeros(shape, dtype=dtype, device=logits.device),
        torch.zeros(shape, dtype=torch.bool, device=logits.device),
    )


__all__ = [
    "PRIMARY_METRIC",
    "Counts",
    "MetricValue",
    "MultiTaskMetrics",
    "TaskMetrics",
    "binary_set_counts",
    "binary_set_metrics",
    "categorical_counts",
    "categorical_metrics",
    "flatten_metrics",
    "metric_names",
    "metrics_from_counts",
    "primary_metric",
]
