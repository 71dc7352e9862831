"""Masked per-task metrics: one kernel per task kind, accumulated with or without torchmetrics.

Everything is accumulated over the *observed* entries only (the masks of
:class:`~dmtl.core.labels.TaskLabels`); ``num_labelled`` counts the samples with at
least one observed entry. Inputs are always the head's outputs (logits).

**Classification** (categorical and binary set) from four per-output counts ``tp``,
``fp``, ``fn``, ``observed`` (:func:`categorical_counts`, :func:`binary_set_counts`).
A categorical task is counted one-vs-rest: class ``c`` gets ``tp_c = #(pred = c, y = c)``,
``fp_c = #(pred = c, y != c)``, ``fn_c = #(pred != c, y = c)``. Predictions: categorical
``argmax_c z_c``; binary set ``sigmoid(z_j) > threshold`` (0.5, strict as in torchmetrics)::

    F1_j          = 2 tp_j / (2 tp_j + fp_j + fn_j)      (None where 2 tp_j + fp_j + fn_j = 0)
    categorical:  accuracy = sum_c tp_c / num_labelled   (micro)
                  f1_macro = mean of the defined F1_c
    binary set:   accuracy = (sum_j observed_j - fp_j - fn_j) / sum_j observed_j
                  f1_mean  = mean of the defined F1_j    (the action-unit convention)

**Regression** from per-target moments over observed entries (:func:`regression_moments`:
``n, sum z, sum y, sum z^2, sum y^2, sum zy``, in float64), with population moments::

    CCC_j    = 2 s_zy / (s_z^2 + s_y^2 + (mean_z - mean_y)^2)     (None with fewer than 2 values)
    ccc_mean = mean of the defined CCC_j
    mse      = sum_j sum (z - y)^2 / sum_j n_j

Nothing observed gives ``None`` ("n/a"), never 0: a task with no labelled sample has
every metric ``None``; a label never observed, or a class that was neither a target
nor predicted, has F1 ``None`` and is left out of the mean (torchmetrics' macro average
does the same). ``zero_division=0.0`` scores an *observed* output with
``2tp + fp + fn = 0`` as 0 instead (the scikit-learn default).

Metric names (the keys of every result dict; ``task.metric_names()`` lists them):

=================  ==========================  ===================================
task kind          key                         meaning
=================  ==========================  ===================================
classification     ``accuracy``                see above
categorical        ``f1_macro``                macro-F1 over classes
categorical        ``f1/<class name>``         per-class F1
binary set         ``f1_mean``                 mean per-label F1
binary set         ``f1/<label name>``         per-label F1
regression         ``ccc_mean``                mean CCC over targets
regression         ``ccc/<target name>``       per-target CCC
regression         ``mse``                     mean squared error over observed entries
all                ``num_labelled``            samples with an observed entry (int)
=================  ==========================  ===================================

Flat names prefix the task: ``<task>/<key>``, e.g. ``digit/accuracy``, ``au/f1/AU12``.
Task names cannot contain ``/``, so the text before the first ``/`` is the task. The
primary metric of a task (the study's headline number) is ``task.primary_metric``:
``accuracy``, ``f1_mean`` or ``ccc_mean``.

Each kind's :class:`MetricKernel` gives a batch's counts or moments (they add up) and
the values of their totals. Training accumulates them as torchmetrics states with
``dist_reduce_fx="sum"`` (:mod:`dmtl.core.synced_metrics`, ``task.metric()``), so
``compute()`` under DDP sums them over processes first; whatever evaluates in one process
(``dmtl evaluate``, the functional forms) adds them up in :class:`SummedMetrics`, which
gives the same values without importing torchmetrics (whose package root imports
torchvision and SciPy: seconds of a command's start).

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
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, Protocol, TypeVar, cast

import torch
from torch import Tensor, nn

from dmtl.core.labels import PartialLabels, TaskLabels

if TYPE_CHECKING:
    from dmtl.core.tasks import BinarySetTask, CategoricalTask, RegressionTask, Task

MetricValue = float | int | None
"""A metric value: a float, an int count (``num_labelled``), or ``None`` for "n/a"."""

_V = TypeVar("_V")


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


def _check_inputs(logits: Tensor, labels: TaskLabels, task: Task) -> None:
    if logits.dim() != 2 or logits.shape[1] != task.num_outputs:
        raise ValueError(
            f"task {task.name!r}: expected outputs of shape (N, {task.num_outputs}), "
            f"got {tuple(logits.shape)}"
        )
    if labels.mask.shape[0] != logits.shape[0]:
        raise ValueError(
            f"task {task.name!r}: {logits.shape[0]} rows of outputs but "
            f"{labels.mask.shape[0]} rows of labels"
        )


# ---- classification kernels ------------------------------------------------------------------


class Counts(NamedTuple):
    """Per-output counts over observed entries; ``num_labelled`` is a 0-dim tensor."""

    tp: Tensor
    fp: Tensor
    fn: Tensor
    observed: Tensor
    num_labelled: Tensor


def categorical_counts(logits: Tensor, labels: TaskLabels, task: CategoricalTask) -> Counts:
    """One-vs-rest counts of a categorical task over its labelled samples (no host sync)."""
    _check_inputs(logits, labels, task)
    num_classes = task.num_outputs
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


def _f1_scores(counts: Counts, zero_division: float | None) -> list[float | None]:
    tp, fp, fn, observed = (c.detach().cpu().long().tolist() for c in counts[:4])
    f1: list[float | None] = []
    for tp_j, fp_j, fn_j, observed_j in zip(tp, fp, fn, observed, strict=True):
        denominator = 2 * tp_j + fp_j + fn_j
        if denominator > 0:
            f1.append(2 * tp_j / denominator)
        elif observed_j > 0 and zero_division is not None:
            f1.append(float(zero_division))
        else:
            f1.append(None)
    return f1


def metrics_from_counts(
    task: Task,
    counts: Counts,
    per_output: bool = True,
    zero_division: float | None = None,
    accuracy_over: Literal["samples", "entries"] = "entries",
) -> dict[str, MetricValue]:
    """The classification metrics of the module docstring from (accumulated) counts.

    ``accuracy_over``: ``samples`` (categorical, micro) or ``entries`` (binary set).
    """
    f1 = _f1_scores(counts, zero_division)
    num_labelled = int(counts.num_labelled)
    defined = [v for v in f1 if v is not None]
    mean_f1 = sum(defined) / len(defined) if defined else None
    accuracy: float | None
    if accuracy_over == "samples":
        accuracy = int(counts.tp.sum()) / num_labelled if num_labelled > 0 else None
    else:
        total = int(counts.observed.sum())
        wrong = int(counts.fp.sum()) + int(counts.fn.sum())
        accuracy = (total - wrong) / total if total > 0 else None
    if num_labelled == 0:
        mean_f1, f1 = None, [None] * len(f1)
    keys = task.metric_names(per_output=False)
    out: dict[str, MetricValue] = {keys[0]: accuracy, keys[1]: mean_f1}
    if per_output:
        out.update({f"f1/{name}": value for name, value in zip(task.names, f1, strict=True)})
    out["num_labelled"] = num_labelled
    return out


# ---- regression kernel -----------------------------------------------------------------------


class Moments(NamedTuple):
    """Per-target sums over observed entries (float64): n, z, y, z^2, y^2, zy."""

    n: Tensor
    sum_z: Tensor
    sum_y: Tensor
    sum_zz: Tensor
    sum_yy: Tensor
    sum_zy: Tensor
    num_labelled: Tensor


def regression_moments(predictions: Tensor, labels: TaskLabels, task: RegressionTask) -> Moments:
    """Per-target moments of predictions ``z`` and targets ``y`` over observed entries."""
    _check_inputs(predictions, labels, task)
    mask = labels.mask.to(predictions.device)
    weight = mask.double()
    z = predictions.detach().double() * weight
    y = torch.where(mask, labels.target.to(predictions.device).double(), 0.0)
    return Moments(
        weight.sum(0), z.sum(0), y.sum(0), (z * z).sum(0), (y * y).sum(0), (z * y).sum(0),
        mask.any(dim=1).sum(),
    )


def metrics_from_moments(
    task: Task, moments: Moments, per_output: bool = True
) -> dict[str, MetricValue]:
    """CCC per target, their mean and the MSE (module docstring) from accumulated moments."""
    n = moments.n.double()
    safe = n.clamp_min(1.0)
    mean_z, mean_y = moments.sum_z / safe, moments.sum_y / safe
    var_z = moments.sum_zz / safe - mean_z**2
    var_y = moments.sum_yy / safe - mean_y**2
    covariance = moments.sum_zy / safe - mean_z * mean_y
    denominator = var_z + var_y + (mean_z - mean_y) ** 2
    ccc: list[float | None] = [
        float(2 * c / d) if count >= 2 and d > 0 else None
        for c, d, count in zip(covariance.tolist(), denominator.tolist(), n.tolist(), strict=True)
    ]
    total = float(n.sum())
    squared = float((moments.sum_zz - 2 * moments.sum_zy + moments.sum_yy).sum())
    defined = [v for v in ccc if v is not None]
    out: dict[str, MetricValue] = {
        "ccc_mean": sum(defined) / len(defined) if defined else None,
        "mse": squared / total if total > 0 else None,
    }
    if per_output:
        out.update({f"ccc/{name}": value for name, value in zip(task.names, ccc, strict=True)})
    out["num_labelled"] = int(moments.num_labelled)
    return out


# ---- one kernel per kind: statistics that add up, values from their totals -------------------


class MetricKernel:
    """One task's metrics as sums: a batch's statistics add up, the values come from totals.

    ``statistics(outputs, labels)`` gives one batch's tensors (named by :attr:`fields`:
    :class:`Counts` or :class:`Moments`), ``zeros()`` the totals of no batch, ``values``
    the metrics of the totals. Two accumulators add them up:
    :class:`~dmtl.core.synced_metrics.TaskMetrics` (torchmetrics states, summed over DDP
    processes; training) and :class:`SummedMetrics` (one process, no torchmetrics).
    """

    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, task: Task, per_output: bool = True) -> None:
        self.task = task
        self.per_output = per_output

    def metric_names(self) -> list[str]:
        """Keys of :meth:`values`' result."""
        return self.task.metric_names(self.per_output)

    def zeros(self) -> tuple[Tensor, ...]:
        """The totals before any batch (on the CPU)."""
        raise NotImplementedError

    def statistics(self, outputs: Tensor, labels: TaskLabels) -> tuple[Tensor, ...]:
        """One batch's statistics (``outputs`` of shape ``(N, num_outputs)``, detached)."""
        raise NotImplementedError

    def values(self, totals: Sequence[Tensor]) -> dict[str, MetricValue]:
        """``{key: value}`` of the accumulated statistics."""
        raise NotImplementedError


class ClassificationKernel(MetricKernel):
    """Counts ``tp, fp, fn, observed`` per output and ``num_labelled`` (:class:`Counts`)."""

    fields = Counts._fields
    accuracy_over: ClassVar[Literal["samples", "entries"]] = "entries"

    def __init__(
        self, task: Task, per_output: bool = True, zero_division: float | None = None
    ) -> None:
        super().__init__(task, per_output)
        self.zero_division = zero_division

    def zeros(self) -> tuple[Tensor, ...]:
        per_output = [torch.zeros(self.task.num_outputs, dtype=torch.long) for _ in range(4)]
        return (*per_output, torch.zeros((), dtype=torch.long))

    def values(self, totals: Sequence[Tensor]) -> dict[str, MetricValue]:
        return metrics_from_counts(
            self.task, Counts(*totals), self.per_output, self.zero_division, self.accuracy_over
        )


class CategoricalKernel(ClassificationKernel):
    """Accuracy (micro), macro-F1 and per-class F1 of a categorical task."""

    task: CategoricalTask
    accuracy_over = "samples"

    def statistics(self, outputs: Tensor, labels: TaskLabels) -> tuple[Tensor, ...]:
        return categorical_counts(outputs, labels, self.task)


class BinarySetKernel(ClassificationKernel):
    """Mean per-label F1, accuracy over entries and per-label F1 at ``threshold``."""

    task: BinarySetTask

    def __init__(
        self, task: BinarySetTask, per_output: bool = True, zero_division: float | None = None,
        threshold: float = 0.5,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        super().__init__(task, per_output, zero_division)
        self.threshold = threshold

    def statistics(self, outputs: Tensor, labels: TaskLabels) -> tuple[Tensor, ...]:
        return binary_set_counts(outputs, labels, self.task, self.threshold)


class RegressionKernel(MetricKernel):
    """CCC per target, mean CCC and MSE from float64 moments (:class:`Moments`)."""

    task: RegressionTask
    fields = Moments._fields

    def zeros(self) -> tuple[Tensor, ...]:
        sums = [torch.zeros(self.task.num_outputs, dtype=torch.float64) for _ in range(6)]
        return (*sums, torch.zeros((), dtype=torch.long))

    def statistics(self, outputs: Tensor, labels: TaskLabels) -> tuple[Tensor, ...]:
        return regression_moments(outputs, labels, self.task)

    def values(self, totals: Sequence[Tensor]) -> dict[str, MetricValue]:
        return metrics_from_moments(self.task, Moments(*totals), self.per_output)


class KernelTotals:
    """What an accumulator of a :class:`MetricKernel`'s statistics does with its totals
    (attributes named after ``kernel.fields``): add a batch, compute the values.

    Shared by :class:`SummedMetrics` (one process) and
    :class:`~dmtl.core.synced_metrics.TaskMetrics` (torchmetrics, summed over DDP
    processes), which differ only in how the totals are stored.
    """

    kernel: MetricKernel

    @property
    def task(self) -> Task:
        return self.kernel.task

    def metric_names(self) -> list[str]:
        """Keys of :meth:`compute`'s result."""
        return self.kernel.metric_names()

    def totals(self) -> tuple[Tensor, ...]:
        """The accumulated statistics, in the order of ``kernel.fields``."""
        return tuple(getattr(self, name) for name in self.kernel.fields)

    def update(self, outputs: Tensor, labels: TaskLabels) -> None:
        """Add the statistics of one batch (``outputs`` of shape ``(N, num_outputs)``)."""
        batch = self.kernel.statistics(outputs.detach(), labels)
        for total, value in zip(self.totals(), batch, strict=True):
            total += value.to(total.device, total.dtype)

    def compute(self) -> dict[str, MetricValue]:
        """``{key: value}`` over every batch since the last reset."""
        return self.kernel.values(self.totals())


class SummedMetrics(KernelTotals, nn.Module):
    """A kernel's totals in one process: what :class:`~dmtl.core.synced_metrics.TaskMetrics`
    gives, without torchmetrics (so without its imports) and without DDP synchronisation.

    For whatever evaluates in one process: ``dmtl evaluate``, metrics per group, the
    functional forms below. The totals are (non-persistent) buffers, so ``.to(device)``
    moves them.

    >>> from dmtl.core.tasks import CategoricalTask
    >>> metric = SummedMetrics(CategoricalTask("d", ["0", "1"]).metric_kernel())
    >>> metric.update(torch.tensor([[2.0, 0.0]]), TaskLabels(torch.tensor([0]),
    ...                                                       torch.tensor([True])))
    >>> metric.compute()["accuracy"]
    1.0
    """

    def __init__(self, kernel: MetricKernel) -> None:
        super().__init__()
        self.kernel = kernel
        for name, zero in zip(kernel.fields, kernel.zeros(), strict=True):
            self.register_buffer(name, zero, persistent=False)

    def reset(self) -> None:
        for total in self.totals():
            total.zero_()


def _computed(kernel: MetricKernel, outputs: Tensor, labels: TaskLabels) -> dict[str, MetricValue]:
    metric = SummedMetrics(kernel)
    metric.update(outputs, labels)
    return metric.compute()


def categorical_metrics(
    logits: Tensor,
    labels: TaskLabels,
    task: CategoricalTask,
    per_class: bool = True,
    zero_division: float | None = None,
) -> dict[str, MetricValue]:
    """Accuracy, macro-F1 and per-class F1 of one batch (functional :class:`CategoricalKernel`).

    >>> from dmtl.core.tasks import CategoricalTask
    >>> task = CategoricalTask("digit", ["0", "1", "2"])
    >>> nothing = TaskLabels(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.bool))
    >>> categorical_metrics(torch.zeros(2, 3), nothing, task, per_class=False)
    {'accuracy': None, 'f1_macro': None, 'num_labelled': 0}
    """
    return _computed(CategoricalKernel(task, per_class, zero_division), logits, labels)


def binary_set_metrics(
    logits: Tensor,
    labels: TaskLabels,
    task: BinarySetTask,
    threshold: float = 0.5,
    per_label: bool = True,
    zero_division: float | None = None,
) -> dict[str, MetricValue]:
    """Per-label F1 at ``threshold``, their mean and accuracy of one batch (functional form).

    >>> from dmtl.core.tasks import BinarySetTask
    >>> task = BinarySetTask("au", ["AU1", "AU2"])
    >>> logits = torch.tensor([[1.0, -1.0], [1.0, 1.0]])      # predictions [[1, 0], [1, 1]]
    >>> target = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    >>> mask = torch.tensor([[True, False], [True, False]])   # AU2 never observed
    >>> result = binary_set_metrics(logits, TaskLabels(target, mask), task)
    >>> result["accuracy"], result["f1/AU1"], result["f1/AU2"], result["f1_mean"]
    (0.5, 0.6666666666666666, None, 0.6666666666666666)
    """
    kernel = BinarySetKernel(task, per_label, zero_division, threshold=threshold)
    return _computed(kernel, logits, labels)


def regression_metrics(
    predictions: Tensor, labels: TaskLabels, task: RegressionTask, per_target: bool = True
) -> dict[str, MetricValue]:
    """CCC per target, mean CCC and MSE of one batch (functional :class:`RegressionKernel`).

    >>> from dmtl.core.tasks import RegressionTask
    >>> task = RegressionTask("va", ["valence"])
    >>> z, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [0.5]])
    >>> result = regression_metrics(z, TaskLabels(y, torch.ones(2, 1, dtype=torch.bool)), task)
    >>> round(result["ccc_mean"], 6), result["mse"]   # 2 * 0.125 / (0.25 + 0.0625 + 0.0625)
    (0.666667, 0.125)
    """
    return _computed(RegressionKernel(task, per_target), predictions, labels)


MAX_PER_OUTPUT_METRICS = 100
"""Per-class / per-label metrics are kept for tasks with at most this many outputs."""


class AccumulatedMetrics(Protocol):
    """What :class:`MultiTaskMetrics` holds per task: a ``TaskMetrics`` or a
    :class:`SummedMetrics`."""

    def metric_names(self) -> list[str]: ...

    def update(self, outputs: Tensor, labels: TaskLabels) -> None: ...

    def compute(self) -> dict[str, MetricValue]: ...

    def reset(self) -> None: ...


class MultiTaskMetrics(nn.Module):
    """One metric per task (``task.metric()``), fed from ``{task: logits}`` and labels.

    A task absent from ``labels`` counts as unlabelled in that batch; a task absent
    from ``logits`` is not updated; logits of unknown tasks are ignored. ``compute()``
    gives ``{task: {key: value}}`` and :meth:`compute_flat` ``{"task/key": value}``.
    Every process must call ``compute()`` under DDP (it synchronises each task's states).
    ``per_output``: keep per-class/label/target values (an int keeps them only for
    tasks with at most that many outputs: 10,177 per-identity F1s are rarely wanted).
    ``synchronised=False`` accumulates each task in a :class:`SummedMetrics` instead of a
    torchmetrics ``Metric``: the same values, for one process, without importing torchmetrics.

    >>> from dmtl.core.labels import collate_labels
    >>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
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
        self, tasks: Sequence[Task], per_output: bool | int = True, synchronised: bool = True,
        **metric_kwargs: Any,
    ) -> None:
        super().__init__()
        self.tasks: dict[str, Task] = {t.name: t for t in tasks}
        if len(self.tasks) != len(tasks):
            raise ValueError("MultiTaskMetrics: task names must be unique")

        def wanted(task: Task) -> bool:
            if isinstance(per_output, bool):
                return per_output
            return task.num_outputs <= per_output

        def metric(task: Task) -> nn.Module:
            if synchronised:
                return task.metric(per_output=wanted(task), **metric_kwargs)
            return SummedMetrics(task.metric_kernel(per_output=wanted(task), **metric_kwargs))

        # A ModuleList, not a ModuleDict: task names need not be valid attribute names.
        self.task_metrics = nn.ModuleList(metric(task) for task in self.tasks.values())
        self._position = {name: i for i, name in enumerate(self.tasks)}

    def __getitem__(self, task: str) -> AccumulatedMetrics:
        return cast(AccumulatedMetrics, self.task_metrics[self._position[task]])

    def update(self, logits: Mapping[str, Tensor], labels: PartialLabels) -> None:
        """Add a batch: ``logits[task]`` of shape ``(N, num_outputs)``, labels of N samples."""
        for name, task in self.tasks.items():
            if name not in logits:
                continue
            task_logits = logits[name]
            task_labels = (
                labels[name]
                if name in labels
                else task.empty_batch_labels(task_logits.shape[0], task_logits.device)
            )
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
        return {name: f"{name}/{task.primary_metric}" for name, task in self.tasks.items()}

    def forward(self, logits: Mapping[str, Tensor], labels: PartialLabels) -> None:
        """Same as :meth:`update`."""
        self.update(logits, labels)


__all__ = [
    "MAX_PER_OUTPUT_METRICS",
    "AccumulatedMetrics",
    "BinarySetKernel",
    "CategoricalKernel",
    "ClassificationKernel",
    "Counts",
    "MetricKernel",
    "MetricValue",
    "Moments",
    "MultiTaskMetrics",
    "RegressionKernel",
    "SummedMetrics",
    "binary_set_counts",
    "binary_set_metrics",
    "categorical_counts",
    "categorical_metrics",
    "flatten_metrics",
    "metrics_from_counts",
    "metrics_from_moments",
    "regression_metrics",
    "regression_moments",
]
