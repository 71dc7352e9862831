"""Task specifications: categorical (one class per sample) and binary-set (multi-label).

A task is a name plus the names of its outputs. Categorical tasks predict
``p(c|x) = softmax(z)(c)`` over ``C`` classes; binary-set tasks predict
``p_j(x) = sigmoid(z_j)`` for each of ``K`` labels.

>>> expr = CategoricalTask("expression", ("neutral", "happy", "sad"))
>>> expr.num_outputs
3
>>> au = BinarySetTask("au", ("AU1", "AU2"))
>>> au.index("AU2")
1
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dmtl.errors import SpecError

TaskKind = Literal["categorical", "binary_set"]


def _check_names(task: str, what: str, names: Sequence[str], minimum: int) -> tuple[str, ...]:
    names = tuple(names)
    if len(names) < minimum:
        raise SpecError(f"task {task!r}: expected at least {minimum} {what}, got {len(names)}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise SpecError(
                f"task {task!r}: {what} #{i} must be a non-empty string, got {name!r}"
            )
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise SpecError(f"task {task!r}: duplicated {what}: {', '.join(duplicated)}")
    return names


@dataclass(frozen=True)
class Task:
    """Common part of every task: a name and the ordered names of its outputs."""

    name: str
    names: tuple[str, ...] = field(default=())

    kind: TaskKind = field(init=False, default="categorical")

    @property
    def num_outputs(self) -> int:
        """Number of logits the task's head produces."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of a class or label name; ``KeyError`` naming the task otherwise."""
        try:
            return self._lookup[name]
        except KeyError:
            raise KeyError(
                f"task {self.name!r} has no {self._what} {name!r}; "
                f"expected one of: {', '.join(self.names)}"
            ) from None

    @property
    def _lookup(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    @property
    def _what(self) -> str:
        return "class"


@dataclass(frozen=True)
class CategoricalTask(Task):
    """Multi-class task: exactly one of ``classes`` per sample.

    ``zero_shot`` names the classes (a suffix of ``classes``) that have no
    training images but can be scored through a relatedness table, e.g.
    compound expressions from their action units.
    """

    zero_shot: tuple[str, ...] = ()

    kind: TaskKind = field(init=False, default="categorical")

    def __init__(self, name: str, classes: Iterable[str], zero_shot: Iterable[str] = ()) -> None:
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"a task name must be a non-empty string, got {name!r}")
        if "/" in name:
            raise SpecError(f"task {name!r}: a task name may not contain '/'")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "names", _check_names(name, "classes", tuple(classes), 2))
        zs = tuple(zero_shot)
        unknown = [z for z in zs if z not in self.names]
        if unknown:
            raise SpecError(
                f"task {name!r}: zero-shot classes {unknown} are not among its classes"
            )
        object.__setattr__(self, "zero_shot", zs)
        object.__setattr__(self, "kind", "categorical")

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in logit order."""
        return self.names

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def trained_classes(self) -> tuple[str, ...]:
        """Classes that have training labels (all but the zero-shot ones)."""
        return tuple(c for c in self.names if c not in self.zero_shot)


@dataclass(frozen=True)
class BinarySetTask(Task):
    """Multi-label task: each of ``labels`` is present (1) or absent (0), independently."""

    kind: TaskKind = field(init=False, default="binary_set")

    def __init__(self, name: str, labels: Iterable[str]) -> None:
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"a task name must be a non-empty string, got {name!r}")
        if "/" in name:
            raise SpecError(f"task {name!r}: a task name may not contain '/'")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "names", _check_names(name, "labels", tuple(labels), 1))
        object.__setattr__(self, "kind", "binary_set")

    @property
    def labels(self) -> tuple[str, ...]:
        """Label names, in logit order."""
        return self.names

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def _what(self) -> str:
        return "label"


def check_unique_task_names(tasks: Sequence[Task]) -> dict[str, Task]:
    """Map task names to tasks, rejecting duplicates."""
    by_name: dict[str, Task] = {}
    for task in tasks:
        if task.name in by_name:
            raise SpecError(f"two tasks are named {task.name!r}")
        by_name[task.name] = task
    return by_name


@dataclass(frozen=True)
class RegressionTask(Task):
    """Real-valued targets, e.g. valence and arousal in [-1, 1] (placeholder, being built)."""

    low: float | None = None
    high: float | None = None

    def __init__(
        self, name: str, targets: Iterable[str], low: float | None = None, high: float | None = None
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "names", _check_names(name, "targets", tuple(targets), 1))
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "kind", "regression")

    @property
    def targets(self) -> tuple[str, ...]:
        return self.names
