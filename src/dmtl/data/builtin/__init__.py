"""Built-in datasets: small, fully labelled, several tasks each, with domain-knowledge edges.

- ``digits``: scikit-learn's 1,797 8x8 digits (bundled, no download); tasks
  ``digit``, ``shape`` (per-class attributes), ``ink`` (measured per image).
- ``fashion_mnist``: Fashion-MNIST, 70,000 28x28 images read from the idx
  files (Debian package ``dataset-fashion-mnist``); tasks ``category``,
  ``group``, ``attributes`` (per class), ``pixel`` (measured per image).

Every sample is labelled for every task; :mod:`dmtl.data.regimes` hides labels
to make the partial setting. Loaders are imported, and files read, only when
a dataset is loaded.

>>> [info.name for info in list_builtin()]
['digits', 'fashion_mnist']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from dmtl.errors import DataError

if TYPE_CHECKING:  # listing the datasets loads no torch
    from dmtl.core.relatedness import Relatedness
    from dmtl.core.tasks import Task

SPLITS = ("train", "test")


@dataclass
class BuiltinDataset:
    """A fully labelled built-in dataset.

    ``inputs``: float32 ``(N, 1, H, W)`` in [0, 1]; ``labels``: encoded
    (categorical int64 ``(N,)``, binary-set float32 ``(N, K)``), every task
    labelled on every sample; ``split``: ``"train"``/``"test"`` per sample;
    ``knowledge``: domain-knowledge relatedness edges (tasks without an edge
    are meant to be related empirically from co-annotated data).
    """

    name: str
    description: str
    tasks: list[Task]
    inputs: np.ndarray
    labels: dict[str, np.ndarray]
    split: np.ndarray
    knowledge: list[Relatedness] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.inputs)
        by_name = {t.name: t for t in self.tasks}
        if sorted(self.labels) != sorted(by_name):
            raise ValueError(
                f"{self.name}: labels for {sorted(self.labels)} but tasks {sorted(by_name)}"
            )
        for name, values in self.labels.items():
            task = by_name[name]
            shape = task.unlabelled(n).shape
            if values.shape != shape:
                raise ValueError(
                    f"{self.name}: labels[{name!r}] has shape {values.shape}, expected {shape}"
                )
        if self.split.shape != (n,):
            raise ValueError(f"{self.name}: split has shape {self.split.shape}, expected ({n},)")
        bad = sorted(set(np.unique(self.split).tolist()) - set(SPLITS))
        if bad:
            raise ValueError(f"{self.name}: unknown split names {bad}; expected {SPLITS}")
        for edge in self.knowledge:
            for task in (edge.source, edge.target):
                if by_name.get(task.name) != task:
                    raise ValueError(f"{self.name}: edge {edge.name} links a task not in tasks")

    def __len__(self) -> int:
        return len(self.inputs)

    def task(self, name: str) -> Task:
        """The task called ``name``."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"{self.name} has no task {name!r}; tasks: {[t.name for t in self.tasks]}")

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.split == split)

    def subset(self, rows: np.ndarray | str) -> BuiltinDataset:
        """The dataset restricted to ``rows`` (indices, boolean mask or a split name)."""
        index = self.indices(rows) if isinstance(rows, str) else np.asarray(rows)
        return BuiltinDataset(
            name=self.name,
            description=self.description,
            tasks=list(self.tasks),
            inputs=self.inputs[index],
            labels={k: v[index] for k, v in self.labels.items()},
            split=self.split[index],
            knowledge=list(self.knowledge),
        )


@dataclass(frozen=True)
class BuiltinInfo:
    """What :func:`list_builtin` says about a dataset without loading it."""

    name: str
    description: str
    size: int
    splits: dict[str, int]


def _load_digits(**kwargs: Any) -> BuiltinDataset:
    from dmtl.data.builtin.digits import load_digits

    return load_digits(**kwargs)


def _load_fashion_mnist(**kwargs: Any) -> BuiltinDataset:
    from dmtl.data.builtin.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(**kwargs)


BUILTIN_DATASETS: dict[str, Callable[..., BuiltinDataset]] = {
    "digits": _load_digits,
    "fashion_mnist": _load_fashion_mnist,
}
"""Name -> loader; keyword arguments of :func:`load_builtin` go to the loader."""

_INFO: dict[str, BuiltinInfo] = {
    "digits": BuiltinInfo(
        "digits",
        "scikit-learn 8x8 handwritten digits (bundled); tasks digit, shape, ink",
        1797,
        {"train": 1437, "test": 360},
    ),
    "fashion_mnist": BuiltinInfo(
        "fashion_mnist",
        "Fashion-MNIST 28x28 clothing (apt-get install dataset-fashion-mnist); "
        "tasks category, group, attributes, pixel",
        70000,
        {"train": 60000, "test": 10000},
    ),
}


def load_builtin(name: str, **kwargs: Any) -> BuiltinDataset:
    """Load a built-in dataset by name (see :data:`BUILTIN_DATASETS`)."""
    if name not in BUILTIN_DATASETS:
        raise DataError(
            f"unknown built-in dataset {name!r}; expected one of: {', '.join(BUILTIN_DATASETS)}"
        )
    return BUILTIN_DATASETS[name](**kwargs)


def list_builtin() -> list[BuiltinInfo]:
    """Name, description and size of each built-in dataset (nothing is loaded)."""
    return [_INFO[name] for name in BUILTIN_DATASETS]


def per_class_labels(classes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Binary-set labels of each sample from its class through a 0/1 table, float32 ``(N, K)``."""
    return np.asarray(table, dtype=np.float32)[np.asarray(classes, dtype=np.int64)]


__all__ = [
    "BUILTIN_DATASETS",
    "SPLITS",
    "BuiltinDataset",
    "BuiltinInfo",
    "list_builtin",
    "load_builtin",
    "per_class_labels",
]
