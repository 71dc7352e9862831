"""Partial labels: per-task targets plus masks saying which entries are observed.

Every sample may be labelled for any subset of the tasks, and for a
binary-set task for any subset of its labels (DISFA and BP4D code different
action units). A batch therefore carries, for each task ``t``:

- categorical: ``target`` of shape ``(N,)`` (class indices, int64) and ``mask`` ``(N,)``;
- binary set:  ``target`` of shape ``(N, K)`` (0./1., float) and ``mask`` ``(N, K)``.

Masked-out targets hold a neutral filler (class 0, value 0.) and must never be read.

The *encoded* per-sample form used by datasets is compact: a class index with
``-1`` for "not labelled", and a float vector with ``NaN`` for each label not
observed. :func:`collate_labels` turns a list of per-sample dicts into
:class:`PartialLabels`; a task missing from a sample's dict means not labelled.

>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> tasks = [CategoricalTask("digit", ["0", "1", "2"]), BinarySetTask("attr", ["even", "big"])]
>>> batch = collate_labels(tasks, [{"digit": 2}, {"attr": {"even": 1}}])
>>> batch["digit"].mask.tolist(), batch["attr"].mask.tolist()
([True, False], [[False, False], [True, False]])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dmtl.core.tasks import BinarySetTask, CategoricalTask, Task
from dmtl.errors import SpecError

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
    """Immutable mapping ``task name -> TaskLabels`` for one batch, validated on construction."""

    def __init__(self, tasks: Sequence[Task], labels: Mapping[str, TaskLabels]) -> None:
        self._tasks = {t.name: t for t in tasks}
        unknown = sorted(set(labels) - set(self._tasks))
        if unknown:
            raise SpecError(f"labels given for unknown tasks: {', '.join(unknown)}")
        sizes: set[int] = set()
        for name, entry in labels.items():
            _validate(self._tasks[name], entry)
            sizes.add(entry.mask.shape[0])
        if len(sizes) > 1:
            raise SpecError(f"tasks disagree on the batch size: {sorted(sizes)}")
        # Masked-out entries get the neutral filler (class 0, value 0.), whatever was given
        # (e.g. -1 or NaN), so that no consumer can be poisoned by reading one.
        self._labels = {
            name: TaskLabels(torch.where(e.mask, e.target, torch.zeros_like(e.target)), e.mask)
            for name, e in labels.items()
        }
        self._batch_size = sizes.pop() if sizes else 0

    @classmethod
    def from_encoded(cls, tasks: Sequence[Task], encoded: Mapping[str, Tensor]) -> PartialLabels:
        """Build from encoded tensors: class index or ``-1``; label value or ``NaN``."""
        out: dict[str, TaskLabels] = {}
        for task in tasks:
            if task.name not in encoded:
                continue
            values = torch.as_tensor(encoded[task.name])
            if isinstance(task, CategoricalTask):
                values = values.long()
                mask = values != MISSING_CLASS
                out[task.name] = TaskLabels(torch.where(mask, values, 0), mask)
            else:
                values = values.float()
                mask = ~torch.isnan(values)
                out[task.name] = TaskLabels(torch.nan_to_num(values, nan=0.0), mask)
        return cls(tasks, out)

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

    def to(self, *args: Any, **kwargs: Any) -> PartialLabels:
        """Move every target and mask (``Tensor.to`` semantics); Lightning calls this."""
        return PartialLabels(
            list(self._tasks.values()), {k: v.to(*args, **kwargs) for k, v in self._labels.items()}
        )

    def encoded(self) -> dict[str, Tensor]:
        """Inverse of :meth:`from_encoded`."""
        out: dict[str, Tensor] = {}
        for name, entry in self._labels.items():
            if entry.target.dim() == 1:
                out[name] = torch.where(entry.mask, entry.target, MISSING_CLASS)
            else:
                out[name] = torch.where(entry.mask, entry.target, math.nan)
        return out

    def __repr__(self) -> str:
        parts = [
            f"{k}: {int(v.labelled_samples.sum())}/{self._batch_size} labelled"
            for k, v in self._labels.items()
        ]
        return f"PartialLabels({'; '.join(parts)})"


def _validate(task: Task, entry: TaskLabels) -> None:
    target, mask = entry.target, entry.mask
    if mask.dtype != torch.bool:
        raise SpecError(f"task {task.name!r}: mask must be bool, got {mask.dtype}")
    if target.shape != mask.shape:
        raise SpecError(
            f"task {task.name!r}: target shape {tuple(target.shape)} does not match "
            f"mask shape {tuple(mask.shape)}"
        )
    if isinstance(task, CategoricalTask):
        if target.dim() != 1:
            raise SpecError(
                f"task {task.name!r}: categorical targets must have shape (N,), "
                f"got {tuple(target.shape)}"
            )
        if target.is_floating_point():
            raise SpecError(f"task {task.name!r}: class indices must be integers")
        observed = target[mask]
        bad = (observed < 0) | (observed >= task.num_classes)
        if bool(bad.any()):
            row = int(torch.nonzero(mask, as_tuple=True)[0][bad][0])
            raise SpecError(
                f"task {task.name!r}, row {row}: class index {int(target[row])} out of range "
                f"[0, {task.num_classes - 1}]"
            )
    else:
        assert isinstance(task, BinarySetTask)
        if target.dim() != 2 or target.shape[1] != task.num_labels:
            raise SpecError(
                f"task {task.name!r}: binary-set targets must have shape (N, {task.num_labels}), "
                f"got {tuple(target.shape)}"
            )
        observed = target[mask]
        bad = (observed < 0) | (observed > 1) | torch.isnan(observed)
        if bool(bad.any()):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            row, col = int(rows[bad][0]), int(cols[bad][0])
            raise SpecError(
                f"task {task.name!r}, row {row}, label {task.labels[col]!r}: value "
                f"{float(target[row, col])} outside [0, 1]"
            )


def encode_sample(tasks: Sequence[Task], sample: Mapping[str, Any]) -> dict[str, Tensor]:
    """Encode one sample's labels (see module doc); missing tasks are encoded as unlabelled.

    Categorical values: a class index or a class name. Binary-set values: a
    mapping ``label -> 0/1`` (absent labels unobserved) or a length-``K``
    sequence with ``None``/``NaN`` for unobserved entries.
    """
    out: dict[str, Tensor] = {}
    for task in tasks:
        value = sample.get(task.name)
        if isinstance(task, CategoricalTask):
            out[task.name] = torch.tensor(_encode_class(task, value), dtype=torch.long)
        else:
            assert isinstance(task, BinarySetTask)
            out[task.name] = _encode_binary(task, value)
    return out


def _encode_class(task: CategoricalTask, value: Any) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_CLASS
    if isinstance(value, str):
        return task.index(value)
    index = int(value)
    if index == MISSING_CLASS:
        return MISSING_CLASS
    if not 0 <= index < task.num_classes:
        raise SpecError(
            f"task {task.name!r}: class index {index} out of range [0, {task.num_classes - 1}]"
        )
    return index


def _encode_binary(task: BinarySetTask, value: Any) -> Tensor:
    encoded = torch.full((task.num_labels,), math.nan)
    if value is None:
        return encoded
    if isinstance(value, Mapping):
        for label, v in value.items():
            encoded[task.index(label)] = _binary_value(task, label, v)
        return encoded
    if isinstance(value, Tensor):
        value = value.reshape(-1).tolist()
    values = list(value)
    if len(values) != task.num_labels:
        raise SpecError(
            f"task {task.name!r}: expected {task.num_labels} label values, got {len(values)}"
        )
    for j, v in enumerate(values):
        encoded[j] = _binary_value(task, task.labels[j], v)
    return encoded


def _binary_value(task: BinarySetTask, label: str, value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    v = float(value)
    if v not in (0.0, 1.0):
        raise SpecError(f"task {task.name!r}, label {label!r}: expected 0 or 1, got {value!r}")
    return v


def collate_labels(tasks: Sequence[Task], samples: Sequence[Mapping[str, Any]]) -> PartialLabels:
    """Stack per-sample label dicts (raw or encoded) into :class:`PartialLabels`."""
    encoded = [
        s if all(isinstance(s.get(t.name), Tensor) for t in tasks) else encode_sample(tasks, s)
        for s in samples
    ]
    if not encoded:
        return empty_labels(tasks)
    stacked = {t.name: torch.stack([e[t.name] for e in encoded]) for t in tasks}
    return PartialLabels.from_encoded(tasks, stacked)


def empty_labels(tasks: Sequence[Task], batch_size: int = 0) -> PartialLabels:
    """Labels of ``batch_size`` samples with nothing observed."""
    out: dict[str, TaskLabels] = {}
    for task in tasks:
        if isinstance(task, CategoricalTask):
            shape: tuple[int, ...] = (batch_size,)
            target = torch.zeros(shape, dtype=torch.long)
        else:
            shape = (batch_size, task.num_outputs)
            target = torch.zeros(shape)
        out[task.name] = TaskLabels(target, torch.zeros(shape, dtype=torch.bool))
    return PartialLabels(tasks, out)
