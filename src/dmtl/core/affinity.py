r"""Task affinity under partial labels: how a step on one task's loss changes another's.

The lookahead affinity of Fifty et al. (*Efficiently Identifying Task Groupings for
Multi-Task Learning*, NeurIPS 2021), measured at the shared parameters
:math:`\theta_s` with a plain gradient step of size :math:`\eta`:

.. math::

    Z_{i \to j} = 1 - \frac{L_j(\theta_s - \eta \nabla_{\theta_s} L_i,\ \theta_{\text{rest}})}
                           {L_j(\theta_s,\ \theta_{\text{rest}})}

:math:`L_j` is task :math:`j`'s loss on the rows labelled for :math:`j` (a task's
supervised loss is a mean over its labelled rows only, so partial labels need nothing
more); :math:`L_i` likewise on the rows labelled for :math:`i`. :math:`Z_{i \to j} > 0`:
a step for :math:`i` lowers :math:`j`'s loss (positive transfer); :math:`< 0`: it raises
it. The diagonal :math:`Z_{i \to i}` is the task's own progress, the scale the others
compare with. A task without labelled rows in the batch gives ``NaN`` in its row and
column (it is left out of averages, not counted as zero).

``groups`` restricts the lookahead to a subset of the shared parameters (e.g. one stage
of the backbone): :math:`\theta_s` is then that subset and the rest stays as it is, which
says at which depth two tasks help or hurt each other.

For a small step, :math:`Z_{i\to j} \approx \eta\, \nabla L_i \cdot \nabla L_j / L_j`
(first order), so it carries the gradients' alignment (the cosine) *and* their scale and
the loss it acts on; it is asymmetric (:math:`i \to j \ne j \to i`).

>>> w = torch.tensor([1.0], requires_grad=True)
>>> def losses(params):
...     v = params.get("w", w)
...     return {"a": (v - 2.0).pow(2).sum(), "b": (v - 3.0).pow(2).sum()}
>>> z = lookahead_affinity(losses, {"w": w}, lr=0.1)["all"]
>>> [[round(x, 4) for x in row] for row in z.values.tolist()]
[[0.36, 0.19], [0.64, 0.36]]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

LossesFn = Callable[[Mapping[str, Tensor]], Mapping[str, Tensor]]
"""``losses(overrides) -> {task: scalar loss}`` with the named parameters replaced by
``overrides`` (the others as they are); ``losses({})`` is the loss at the current point."""

ALL_PARAMETERS = "all"
"""The group name of the lookahead over every shared parameter."""


@dataclass(frozen=True)
class AffinityMatrix:
    """``values[i, j]`` = :math:`Z_{i \\to j}` between ``tasks[i]`` and ``tasks[j]``."""

    tasks: tuple[str, ...]
    values: Tensor

    def get(self, source: str, target: str) -> float:
        """:math:`Z_{source \\to target}`."""
        return float(self.values[self.tasks.index(source), self.tasks.index(target)])


def lookahead_affinity(
    losses: LossesFn,
    params: Mapping[str, Tensor],
    lr: float,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, AffinityMatrix]:
    """:math:`Z_{i \\to j}` for every pair of tasks, for each group of parameters.

    Args:
        losses: see :data:`LossesFn`; every loss must depend on ``params`` through autograd.
        params: the shared parameters by name (leaves requiring grad).
        lr: the lookahead step :math:`\\eta` (> 0).
        groups: ``{group: parameter names}``; default ``{"all": every name}``.

    Returns:
        ``{group: AffinityMatrix}`` (float64 values; ``NaN`` where a loss is undefined:
        a task whose loss has no gradient or is not positive).
    """
    if not lr > 0:
        raise ValueError(f"lookahead step lr must be positive, got {lr}")
    names = list(params)
    chosen = dict(groups) if groups is not None else {ALL_PARAMETERS: names}
    for group, members in chosen.items():
        unknown = sorted(set(members) - set(params))
        if unknown:
            raise ValueError(f"affinity group {group!r} names unknown parameters: {unknown}")
    base = dict(losses({}))
    tasks = tuple(base)
    gradients = {task: _gradients(base[task], params) for task in tasks}
    before = torch.tensor([_value(base[t]) for t in tasks], dtype=torch.float64)
    result: dict[str, AffinityMatrix] = {}
    for group, members in chosen.items():
        rows = []
        for task in tasks:
            grads = gradients[task]
            if grads is None:
                rows.append(torch.full((len(tasks),), math.nan, dtype=torch.float64))
                continue
            stepped = {n: params[n].detach() - lr * grads[n] for n in members}
            with torch.no_grad():
                after = losses(stepped)
            rows.append(torch.tensor([_value(after[t]) for t in tasks], dtype=torch.float64))
        values = 1.0 - torch.stack(rows) / before.unsqueeze(0)
        values[:, ~(before > 0)] = math.nan
        result[group] = AffinityMatrix(tasks, values)
    return result


def _value(loss: Tensor) -> float:
    value = float(loss.detach())
    return value if math.isfinite(value) else math.nan


def _gradients(loss: Tensor, params: Mapping[str, Tensor]) -> dict[str, Tensor] | None:
    """``{name: dL/dp}`` (zeros where ``loss`` does not reach ``p``); ``None`` when the loss
    has no graph (a task without labelled rows)."""
    if not loss.requires_grad or not math.isfinite(float(loss.detach())):
        return None
    grads = torch.autograd.grad(
        loss, list(params.values()), retain_graph=True, allow_unused=True, materialize_grads=True
    )
    return {name: g.detach() for name, g in zip(params, grads, strict=True)}


@dataclass
class AffinityAverage:
    """The mean of :math:`Z` over measured steps, entry by entry, ``NaN`` steps left out."""

    sums: dict[str, Tensor] = field(default_factory=dict)
    counts: dict[str, Tensor] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()

    def add(self, measured: Mapping[str, AffinityMatrix]) -> None:
        """Add one step's matrices (same tasks every time)."""
        for group, matrix in measured.items():
            if not self.tasks:
                self.tasks = matrix.tasks
            if matrix.tasks != self.tasks:
                raise ValueError(f"affinity tasks changed: {matrix.tasks} vs {self.tasks}")
            finite = torch.isfinite(matrix.values)
            zero = torch.zeros_like(matrix.values)
            self.sums[group] = self.sums.get(group, zero) + torch.where(finite, matrix.values, 0.0)
            self.counts[group] = self.counts.get(group, zero) + finite.to(zero.dtype)

    def mean(self) -> dict[str, AffinityMatrix]:
        """``{group: mean matrix}`` (``NaN`` where no step measured the entry)."""
        return {
            group: AffinityMatrix(self.tasks, self.sums[group] / self.counts[group])
            for group in self.sums
        }


def received(matrix: AffinityMatrix, task: str, others: Sequence[str]) -> float:
    """Mean :math:`Z_{j \\to task}` over ``others`` (defined entries; ``0`` when none):
    how much the other tasks' steps help ``task``."""
    values = [matrix.get(j, task) for j in others if j != task]
    defined = [v for v in values if math.isfinite(v)]
    return sum(defined) / len(defined) if defined else 0.0


def grouping_score(matrix: AffinityMatrix, partition: Sequence[Sequence[str]]) -> float:
    r"""TAG's score of a partition: the mean over tasks of the affinity each task receives
    from its group mates, :math:`\frac{1}{T}\sum_t \operatorname{mean}_{j \in g(t)
    \setminus t} Z_{j \to t}` (a task alone receives 0)."""
    total = 0.0
    for group in partition:
        for task in group:
            total += received(matrix, task, group)
    return total / max(1, sum(len(g) for g in partition))


def best_partition(
    matrix: AffinityMatrix, max_groups: int | None = None
) -> list[list[str]]:
    """The partition of the tasks with the highest :func:`grouping_score`; on a tie, the one
    with fewer groups (more sharing), then the first in enumeration order. Exhaustive
    (Bell numbers: 4140 partitions for 8 tasks); more than 8 tasks is refused.

    >>> m = AffinityMatrix(("a", "b", "c"), torch.tensor(
    ...     [[1.0, 0.2, -0.1], [0.3, 1.0, -0.2], [-0.1, -0.3, 1.0]], dtype=torch.float64))
    >>> best_partition(m)
    [['a', 'b'], ['c']]
    """
    tasks = list(matrix.tasks)
    if len(tasks) > 8:
        raise ValueError(
            f"best_partition enumerates partitions of at most 8 tasks, got {len(tasks)}"
        )
    limit = max_groups or len(tasks)
    best: tuple[float, int, list[list[str]]] | None = None
    for partition in _partitions(tasks):
        if len(partition) > limit:
            continue
        score = round(grouping_score(matrix, partition), 12)
        if best is None or (score, -len(partition)) > (best[0], -best[1]):
            best = (score, len(partition), partition)
    assert best is not None
    return best[2]


def _partitions(items: list[str]) -> list[list[list[str]]]:
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    out: list[list[list[str]]] = []
    for smaller in _partitions(rest):
        out.append([[first], *smaller])
        for index in range(len(smaller)):
            out.append([*smaller[:index], [first, *smaller[index]], *smaller[index + 1 :]])
    return sorted(out, key=len)


def cross_affinity(matrix: AffinityMatrix, group: Sequence[str], others: Sequence[str]) -> float:
    """Mean of :math:`Z_{i \\to j}` and :math:`Z_{j \\to i}` over ``i`` in ``group`` and ``j``
    in ``others`` (defined entries; ``0`` when none)."""
    values = [
        matrix.get(a, b)
        for i, j in itertools.product(group, others)
        for a, b in ((i, j), (j, i))
    ]
    defined = [v for v in values if math.isfinite(v)]
    return sum(defined) / len(defined) if defined else 0.0


def branch_point(per_stage: Sequence[AffinityMatrix], group: Sequence[str],
                 others: Sequence[str]) -> int:
    """Where ``group`` leaves the shared trunk: the first stage ``s`` from which the cross
    affinity between ``group`` and ``others`` is not positive at every stage ``>= s``
    (stages ``< s`` stay shared); the last stage when even that one is positive.

    >>> m = lambda z: AffinityMatrix(("a", "b"), torch.tensor([[1.0, z], [z, 1.0]]))
    >>> branch_point([m(0.2), m(-0.1), m(-0.3)], ["a"], ["b"])
    1
    >>> branch_point([m(-0.2), m(0.1), m(0.3)], ["a"], ["b"])
    2
    """
    if not per_stage:
        raise ValueError("branch_point needs the affinity of at least one stage")
    point = len(per_stage) - 1
    for stage in range(len(per_stage) - 1, -1, -1):
        if cross_affinity(per_stage[stage], group, others) > 0:
            break
        point = stage
    return point


__all__ = [
    "ALL_PARAMETERS",
    "AffinityAverage",
    "AffinityMatrix",
    "LossesFn",
    "best_partition",
    "branch_point",
    "cross_affinity",
    "grouping_score",
    "lookahead_affinity",
    "received",
]
