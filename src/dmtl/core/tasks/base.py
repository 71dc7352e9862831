"""What every task kind has: a name, the ordered names of its outputs, and one interface.

A task *kind* (:class:`~dmtl.core.tasks.CategoricalTask`,
:class:`~dmtl.core.tasks.BinarySetTask`, :class:`~dmtl.core.tasks.RegressionTask`)
carries everything that differs by kind, so that the rest of dmtl asks the task and
never branches on its type:

- **encoded labels** (the one form labels take after parsing): their dtype and
  filler, which rows are labelled, hiding rows, validation, manifest columns;
- **batch labels** (:class:`~dmtl.core.labels.TaskLabels`): from encoded tensors,
  empty ones, validation of user-given ones;
- **learning**: the supervised loss, predictions from logits (probabilities or
  values), the metric set;
- **relatedness**: whether it can be the source or the target of an edge and, as a
  target, how its table is checked, inverted and learnt from;
- **(de)serialisation**: :meth:`Task.to_dict` and :func:`task_from_dict`.

Kinds register themselves in :data:`TASK_KINDS` under their ``kind`` name.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor

from dmtl.core.labels import TaskLabels
from dmtl.errors import DataError, SpecError

if TYPE_CHECKING:
    from torchmetrics import Metric

    from dmtl.core.metrics import MetricKernel
    from dmtl.core.relatedness import Relatedness


class LabelCellError(DataError):
    """Bad cells in one label column: ``positions`` (0-based rows) and what was expected.

    The manifest reader adds the file, row and line; on its own the message names the
    column.
    """

    def __init__(self, column: str, positions: np.ndarray, message: str) -> None:
        self.column = column
        self.positions = np.asarray(positions, dtype=np.int64)
        self.message = message
        more = len(self.positions) - 1
        extra = f" ({more} more bad value(s) in this column)" if more > 0 else ""
        super().__init__(f"column {column!r}, row {int(self.positions[0]) + 1}: {message}{extra}")


def check_names(task: str, what: str, names: Iterable[str], minimum: int) -> tuple[str, ...]:
    """Validate the output names of a task: at least ``minimum``, non-empty, unique."""
    names = tuple(names)
    if len(names) < minimum:
        raise SpecError(f"task {task!r}: expected at least {minimum} {what}, got {len(names)}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"task {task!r}: {what} #{i} must be a non-empty string, got {name!r}")
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise SpecError(f"task {task!r}: duplicated {what}: {', '.join(duplicated)}")
    return names


def check_task_name(name: Any) -> str:
    """A task name: a non-empty string without ``/`` (metric names are ``<task>/<key>``)."""
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"a task name must be a non-empty string, got {name!r}")
    if "/" in name:
        raise SpecError(f"task {name!r}: a task name may not contain '/'")
    return name


@dataclass(frozen=True)
class Task:
    """A task: ``name`` and the ordered ``names`` of its outputs (classes, labels or targets).

    Equality (and hashing) compares the kind, the name and the output names, plus what
    a kind adds to its identity (e.g. zero-shot classes); training options such as
    class weights are not part of a task's identity.
    """

    name: str
    names: tuple[str, ...] = field(default=())

    kind: ClassVar[str] = ""
    """The kind's name in configs and files: ``categorical``, ``binary_set``, ``regression``."""
    output_word: ClassVar[str] = "output"
    """What one output is called in messages: ``class``, ``label``, ``target``."""
    output_words: ClassVar[str] = "outputs"
    """The plural: ``classes``, ``labels``, ``targets``."""
    primary_metric: ClassVar[str] = ""
    """Key of the headline metric (the study's number for the task)."""
    manifest_dtype: ClassVar[str] = "object"
    """The pandas dtype of a manifest column written from encoded labels."""
    can_be_edge_source: ClassVar[bool] = False
    can_be_edge_target: ClassVar[bool] = False

    # ---- identity ---------------------------------------------------------------------------

    @property
    def num_outputs(self) -> int:
        """Number of logits the task's head produces."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of an output name; ``KeyError`` naming the task otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"task {self.name!r} has no {self.output_word} {name!r}; "
                f"expected one of: {', '.join(self.names)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description from which :func:`task_from_dict` rebuilds the task."""
        raise NotImplementedError

    def with_options(self: _T, **options: Any) -> _T:
        """A copy with other training options (e.g. ``class_weight``): keys of :meth:`to_dict`."""
        return type(self).from_dict({**self.to_dict(), **options})  # type: ignore[attr-defined]

    # ---- encoded labels (numpy) -------------------------------------------------------------

    def unlabelled(self, n: int) -> np.ndarray:
        """Encoded labels of ``n`` samples with nothing observed."""
        raise NotImplementedError

    def observed(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the observed entries: ``(N,)`` or ``(N, K)``."""
        raise NotImplementedError

    def labelled_rows(self, values: np.ndarray) -> np.ndarray:
        """Boolean ``(N,)``: samples with at least one observed entry."""
        observed = self.observed(values)
        return np.asarray(observed if observed.ndim == 1 else observed.any(axis=1))

    def hide(self, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """A copy of ``values`` whose rows ``rows`` (boolean ``(N,)``) are unobserved."""
        out = values.copy()
        out[rows] = self.unlabelled(1)[0]
        return out

    def check_encoded(self, values: Any, n: int, where: str) -> np.ndarray:
        """Validate encoded labels of ``n`` samples; return them in the kind's dtype."""
        raise NotImplementedError

    def manifest_columns(self) -> list[str]:
        """The task's columns in a manifest."""
        raise NotImplementedError

    def parse_columns(self, columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Encode manifest cells; ``columns`` holds some of :meth:`manifest_columns`.

        A column is a numeric array (``NaN`` = empty) or an object array of stripped
        strings (``""`` = empty). Raises :class:`LabelCellError` for bad cells.
        """
        raise NotImplementedError

    def decode(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Manifest columns of encoded labels (inverse of :meth:`parse_columns`)."""
        raise NotImplementedError

    def encode_value(self, value: Any) -> Tensor:
        """One sample's label from a Python value (see each kind); ``None`` = unlabelled."""
        raise NotImplementedError

    def count_labels(self, values: np.ndarray) -> list[tuple[str, int, int | None]]:
        """Per output: ``(name, samples observed, positives or None)``."""
        raise NotImplementedError

    def strata(self, values: np.ndarray) -> np.ndarray | None:
        """Per sample, the group to stratify a subsample by (its class), or ``None``."""
        return None

    def balanced_weight(self, values: np.ndarray) -> tuple[float, ...] | None:
        """Loss weights that balance the encoded training ``values`` (None: no such notion)."""
        return None

    # ---- batch labels (torch) ---------------------------------------------------------------

    def batch_labels(self, encoded: Tensor) -> TaskLabels:
        """Targets and mask from encoded labels of a batch (trusted: already validated)."""
        raise NotImplementedError

    def encode_batch(self, labels: TaskLabels) -> Tensor:
        """Encoded form of batch labels (inverse of :meth:`batch_labels`)."""
        raise NotImplementedError

    def empty_batch_labels(self, n: int, device: torch.device | None = None) -> TaskLabels:
        """Labels of ``n`` samples with nothing observed."""
        raise NotImplementedError

    def check_batch(self, labels: TaskLabels) -> None:
        """Raise :class:`~dmtl.errors.SpecError` unless ``labels`` fit this task."""
        if labels.mask.dtype != torch.bool:
            raise SpecError(f"task {self.name!r}: mask must be bool, got {labels.mask.dtype}")
        if labels.target.shape != labels.mask.shape:
            raise SpecError(
                f"task {self.name!r}: target shape {tuple(labels.target.shape)} does not match "
                f"mask shape {tuple(labels.mask.shape)}"
            )

    # ---- learning ---------------------------------------------------------------------------

    def loss(self, logits: Tensor, labels: TaskLabels) -> Tensor:
        """The supervised loss over the observed entries (exactly 0, with gradient, if none)."""
        raise NotImplementedError

    def predict(self, logits: Tensor) -> Tensor:
        """What the head's output means: class probabilities, label probabilities or values."""
        raise NotImplementedError

    def decide(self, outputs: Tensor, thresholds: Sequence[float] | None = None) -> np.ndarray:
        """Encoded labels from predictions (:meth:`predict`): the class, 0/1 per label (at
        ``thresholds``, 0.5 by default), or the values."""
        raise NotImplementedError

    def metric(self, per_output: bool = True, **kwargs: Any) -> Metric:
        """A torchmetrics ``Metric`` accumulating this task's metrics (DDP-synchronised)."""
        raise NotImplementedError

    def metric_kernel(self, per_output: bool = True, **kwargs: Any) -> MetricKernel:
        """This task's metrics as summable statistics (:class:`~dmtl.core.metrics.MetricKernel`),
        which :meth:`metric` accumulates with torchmetrics and
        :class:`~dmtl.core.metrics.SummedMetrics` without."""
        raise NotImplementedError

    def metric_names(self, per_output: bool = True) -> list[str]:
        """The keys of the metric's result, in order."""
        raise NotImplementedError

    # ---- relatedness (as an edge's target) --------------------------------------------------

    def check_table(self, table: Tensor, edge: Relatedness) -> None:
        """Validate the table of an edge into this task (values, rows)."""
        raise self.no_edge(edge.name)

    def no_edge(self, edge_name: str) -> SpecError:
        """The error for an edge into a kind that cannot be an edge's target."""
        return SpecError(
            f"edge {edge_name}: task {self.name!r} is a {self.kind} task, and {self.kind} "
            "tasks take part in no relatedness edge (there is no such edge type yet)"
        )

    def __repr__(self) -> str:
        shown = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
        return f"{type(self).__name__}({self.name!r}, [{shown}])"


_T = TypeVar("_T", bound=Task)

TASK_KINDS: dict[str, type[Task]] = {}
"""Registered task kinds by ``kind`` name."""


def register_task_kind(cls: type[_T]) -> type[_T]:
    """Class decorator adding a task kind to :data:`TASK_KINDS` under ``cls.kind``."""
    if not cls.kind or cls.kind in TASK_KINDS:
        raise SpecError(f"task kind {cls.kind!r} is empty or already registered")
    TASK_KINDS[cls.kind] = cls
    return cls


def task_from_dict(spec: Mapping[str, Any]) -> Task:
    """The task that :meth:`Task.to_dict` described.

    >>> from dmtl.core.tasks import CategoricalTask
    >>> task_from_dict(CategoricalTask("d", ["0", "1"]).to_dict())
    CategoricalTask('d', [0, 1])
    """
    kind = spec.get("type")
    if kind not in TASK_KINDS:
        raise SpecError(f"unknown task type {kind!r}; expected one of: {', '.join(TASK_KINDS)}")
    factory: Callable[..., Task] = TASK_KINDS[kind].from_dict  # type: ignore[attr-defined]
    return factory(spec)


def check_unique_task_names(tasks: Sequence[Task]) -> dict[str, Task]:
    """Map task names to tasks, rejecting duplicates."""
    by_name: dict[str, Task] = {}
    for task in tasks:
        if task.name in by_name:
            raise SpecError(f"two tasks are named {task.name!r}")
        by_name[task.name] = task
    return by_name


def is_missing(value: Any) -> bool:
    """``None`` or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


__all__ = [
    "TASK_KINDS",
    "LabelCellError",
    "Task",
    "check_names",
    "check_task_name",
    "check_unique_task_names",
    "is_missing",
    "register_task_kind",
    "task_from_dict",
]
