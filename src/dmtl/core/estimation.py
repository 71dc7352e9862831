r"""Empirical relatedness: estimate ``R`` for an edge A -> B by streaming counts over batches.

From the samples labelled for both A and B (method.md section 3)::

    R[c, j] = (n_cj + alpha * m_j) / (n_c + alpha)

- binary-set B: ``n_c`` counts samples of class c whose label j is observed (so
  partially observed label sets are handled per label), ``n_cj`` those with
  ``b_j = 1``, and ``m_j`` is the overall rate of ``b_j = 1`` among them;
- categorical B: ``n_cd`` counts ``(c, d)`` pairs, ``n_c = sum_d n_cd`` and ``m_d``
  the overall rate of d, so every row still sums to 1.

``alpha`` (default 1) shrinks rare classes towards the marginal; a class never
seen together with B gets the marginal itself.

*From predictions* (beyond the paper, when no co-annotated data exist), the
counts are soft: ``n_c = sum_x p_A(c|x)`` and ``n_cj = sum_x p_A(c|x) p_B,j(x)``;
with ``alpha = 0`` this is ``R[c,j] = sum_x p_A(c|x) p_B,j(x) / sum_x p_A(c|x)``.

Counts are sums, so the estimate does not depend on how the data are batched.

>>> from dmtl.core.labels import collate_labels
>>> from dmtl.core.tasks import BinarySetTask, CategoricalTask
>>> a, b = CategoricalTask("a", ["x", "y"]), BinarySetTask("b", ["u"])
>>> est = RelatednessEstimator(a, b, alpha=0.0)
>>> est.update(collate_labels([a, b], [{"a": 0, "b": [1]}, {"a": 0, "b": [0]}, {"a": 1, "b": [1]}]))
>>> est.compute().table
tensor([[0.5000],
        [1.0000]])
"""

from __future__ import annotations

import torch
from torch import Tensor

from dmtl.core.labels import PartialLabels, TaskLabels
from dmtl.core.relatedness import Relatedness
from dmtl.core.tasks import CategoricalTask, Task
from dmtl.errors import SpecError


class RelatednessEstimator:
    """Accumulates co-occurrence counts for one edge; :meth:`compute` returns the smoothed table."""

    def __init__(self, source: CategoricalTask, target: Task, alpha: float = 1.0) -> None:
        if not source.can_be_edge_source:
            raise SpecError(f"edge {source.name}->{target.name}: source must be categorical")
        if not target.can_be_edge_target:
            raise target.no_edge(f"{source.name}->{target.name}")
        if alpha < 0:
            raise SpecError(
                f"edge {source.name}->{target.name}: alpha must be >= 0, got {alpha}"
            )
        self.source, self.target, self.alpha = source, target, float(alpha)
        shape = (source.num_classes, target.num_outputs)
        self.joint = torch.zeros(shape, dtype=torch.float64)  # n_cj (or n_cd)
        self.observed = torch.zeros(shape, dtype=torch.float64)  # n_c, per column
        self.num_samples = 0.0

    @property
    def name(self) -> str:
        return f"{self.source.name}->{self.target.name}"

    def update(self, labels: PartialLabels) -> None:
        """Add the samples of a batch labelled for both tasks (hard labels)."""
        if self.source.name not in labels or self.target.name not in labels:
            return
        a, b = labels[self.source.name], labels[self.target.name]
        both = a.mask & b.labelled_samples
        if not bool(both.any()):
            return
        one_hot_a = torch.nn.functional.one_hot(a.target[both], self.source.num_classes).double()
        values, observed = self.target.indicator(  # type: ignore[attr-defined]
            TaskLabels(b.target[both], b.mask[both])
        )
        self.joint += one_hot_a.T @ values
        self.observed += one_hot_a.T @ observed
        self.num_samples += float(both.sum())

    def update_from_predictions(self, p_source: Tensor, p_target: Tensor) -> None:
        """Add soft counts from predictions ``p_A`` ``(N, C)`` and ``p_B`` ``(N, K)``."""
        p_source, p_target = p_source.detach().double().cpu(), p_target.detach().double().cpu()
        self.joint += p_source.T @ p_target
        self.observed += p_source.sum(0)[:, None].expand_as(self.joint)
        self.num_samples += float(p_source.shape[0])

    def marginal(self) -> Tensor:
        """``m_j``: overall rate of each B label (or class) among the counted samples."""
        total = self.observed.sum(0)
        if bool((total <= 0).any()):
            missing = [self.target.names[j] for j in torch.nonzero(total <= 0).flatten().tolist()]
            raise SpecError(
                f"edge {self.name}: no sample labelled for both tasks observes {missing}; "
                "cannot estimate the table (use a domain-knowledge table, or an overlap regime)"
            )
        return self.joint.sum(0) / total

    def compute(self) -> Relatedness:
        """The smoothed table as a :class:`Relatedness` edge."""
        m = self.marginal()
        table = (self.joint + self.alpha * m) / (self.observed + self.alpha).clamp_min(1e-12)
        unseen = self.observed == 0
        table = torch.where(unseen, m.expand_as(table), table)
        return Relatedness(self.source, self.target, table.float().clamp(0.0, 1.0))

    def merge(self, other: RelatednessEstimator) -> None:
        """Add another estimator's counts (e.g. from another process)."""
        self.joint += other.joint
        self.observed += other.observed
        self.num_samples += other.num_samples
