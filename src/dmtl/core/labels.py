"""Partial labels: per-task targets plus masks saying which entries are observed.

Every sample may be labelled for any subset of the tasks, and for a binary-set or
regression task for any subset of its labels or targets (DISFA and BP4D code
different action units). A batch therefore carries, for each task ``t``, a
:class:`TaskLabels` whose layout the task's kind defines:

- categorical: ``target`` of shape ``(N,)`` (class indices, int64) and ``mask`` ``(N,)``;
- binary set:  ``target`` ``(N, K)`` (0./1., float) and ``mask`` ``(N, K)``;
- regression:  ``target`` ``(N, K)`` (values, float) and ``mask`` ``(N, K)``.

Masked-out targets hold a neutral filler (class 0, value 0.) and must never be read.

The *encoded* form, used by datasets, is compact: a class index with ``-1``
(:data:`MISSING_CLASS`) for "not labelled", a float vector with ``NaN`` for each
entry not observed. It is validated once, where labels enter dmtl (a manifest, an
array, a built-in dataset); :meth:`PartialLabels.from_encoded` trusts it.
:func:`collate_labels` turns a list of per-sample dicts into :class:`PartialLabels`;
a task missing from a sample's dict means not labelled.

>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> tasks = [CategoricalTask("digit", ["0", "1", "2"]), BinarySetTask("attr", ["even", "big"])]
>>> batch = collate_labels(tasks, [{"digit": 2}, {"attr": {"even": 1}}])
>>> batch["digit"].mask.tolist(), batch["attr"].mask.tolist()
([True, False], [[False, False], [True, False]])
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dmtl.errors import SpecError

if TYPE_CHECKING:
    from dmtl.core.tasks import Task

MISSING_CLASS = -1
"""Encoded value of an unlabelled categorical entry."""


@dataclass(frozen=True)
class TaskLabels:
    """Targets and observation mask of one task over a batch."""

    target: Tensor
    mask: Tensor

    def to(self, *args: Any, **kwargs: Any) -> TaskLabels:
        return TaskLabels(self.target.to(*args, **kwargs), self.mask.to(*args, **kwargs))

    @property
    def labelled_samples(self) -> Tensor:
        """Boolean ``(N,)``: samples with at least one observed entry for this task."""
        return self.mask if self.mask.dim() == 1 else self.mask.any(dim=1)


class PartialLabels(Mapping[str, TaskLabels]):
    """Immutable mapping ``task name -> TaskLabels`` for one batch.

    The constructor validates what it is given (each task checks its own layout and
    values); :meth:`from_encoded` builds from already validated encoded tensors.
    """

    def __init__(self, tasks: Sequence[Task], labels: Mapping[str, TaskLabels]) -> None:
        by_name = {t.name: t for t in tasks}
        unknown = sorted(set(labels) - set(by_name))
        if unknown:
            raise SpecError(f"labels given for unknown tasks: {', '.join(unknown)}")
        sizes = {entry.mask.shape[0] for entry in labels.values()}
        for name, entry in labels.items():
            by_name[name].check_batch(entry)
        if len(sizes) > 1:
            raise SpecError(f"tasks disagree on the batch size: {sorted(sizes)}")
        # Masked-out entries get the neutral filler (class 0, value 0.), whatever was given
        # (e.g. -1 or NaN), so that no consumer can be poisoned by reading one.
        cleaned = {
            name: TaskLabels(torch.where(e.mask, e.target, torch.zeros_like(e.target)), e.mask)
            for name, e in labels.items()
        }
        self._set(by_name, cleaned, sizes.pop() if sizes else 0)

    def _set(self, tasks: dict[str, Task], labels: dict[str, TaskLabels], size: int) -> None:
        self._tasks = tasks
        self._labels = labels
        self._batch_size = size

    @classmethod
    def trusted(
        cls, tasks: Mapping[str, Task], labels: dict[str, TaskLabels], batch_size: int
    ) -> PartialLabels:
        """Labels known to be valid and clean (built by a task from encoded tensors)."""
        out = cls.__new__(cls)
        out._set(dict(tasks), labels, batch_size)
        return out

    @classmethod
    def from_encoded(cls, tasks: Sequence[Task], encoded: Mapping[str, Tensor]) -> PartialLabels:
        """Build from validated encoded tensors: class index or ``-1``; value or ``NaN``."""
        by_name = {t.name: t for t in tasks}
        labels = {
            name: by_name[name].batch_labels(torch.as_tensor(values))
            for name, values in encoded.items()
            if name in by_name
        }
        size = next((entry.mask.shape[0] for entry in labels.values()), 0)
        return cls.trusted(by_name, labels, size)

    @property
    def tasks(self) -> dict[str, Task]:
        return dict(self._tasks)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def __getitem__(self, name: str) -> TaskLabels:
        return self._labels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def get_or_empty(self, task: Task, n: int, device: torch.device | None = None) -> TaskLabels:
        """The task's labels, or ``n`` all-unlabelled ones when the batch has none for it."""
        if task.name in self._labels:
            return self._labels[task.name]
        return task.empty_batch_labels(n, device)

    def to(self, *args: Any, **kwargs: Any) -> PartialLabels:
        """Move every target and mask (``Tensor.to`` semantics); Lightning calls this."""
        moved = {k: v.to(*args, **kwargs) for k, v in self._labels.items()}
        return PartialLabels.trusted(self._tasks, moved, self._batch_size)

    def encoded(self) -> dict[str, Tensor]:
        """Inverse of :meth:`from_encoded`."""
        return {name: self._tasks[name].encode_batch(e) for name, e in self._labels.items()}

    def __repr__(self) -> str:
        parts = [
            f"{k}: {int(v.labelled_samples.sum())}/{self._batch_size} labelled"
            for k, v in self._labels.items()
        ]
        return f"PartialLabels({'; '.join(parts)})"


def encode_sample(tasks: Sequence[Task], sample: Mapping[str, Any]) -> dict[str, Tensor]:
    """Encode one sample's labels (see each task kind's ``encode_value``); missing = unlabelled.

    Categorical values: a class index or a class name. Binary-set and regression
    values: a mapping ``name -> value`` (absent entries unobserved) or a length-``K``
    sequence with ``None``/``NaN`` for unobserved entries.
    """
    return {task.name: task.encode_value(sample.get(task.name)) for task in tasks}


def collate_labels(tasks: Sequence[Task], samples: Sequence[Mapping[str, Any]]) -> PartialLabels:
    """Stack per-sample label dicts (raw values, or encoded tensors) into :class:`PartialLabels`."""
    encoded = [
        s if all(isinstance(s.get(t.name), Tensor) for t in tasks) else encode_sample(tasks, s)
        for s in samples
    ]
    if not encoded:
        return empty_labels(tasks)
    stacked = {t.name: torch.stack([e[t.name] for e in encoded]) for t in tasks}
    for task in tasks:
        task.check_batch(task.batch_labels(stacked[task.name]))
    return PartialLabels.from_encoded(tasks, stacked)


def empty_labels(tasks: Sequence[Task], batch_size: int = 0) -> PartialLabels:
    """Labels of ``batch_size`` samples with nothing observed."""
    labels = {task.name: task.empty_batch_labels(batch_size) for task in tasks}
    return PartialLabels.trusted({t.name: t for t in tasks}, labels, batch_size)


__all__ = [
    "MISSING_CLASS",
    "PartialLabels",
    "TaskLabels",
    "collate_labels",
    "empty_labels",
    "encode_sample",
]
