r"""Binary-set tasks: each of ``K`` labels is present (1) or absent (0), independently.

- prediction: ``p_j(x) = sigmoid(z_j)``;
- encoded label: ``float32 (K,)`` with 0., 1. or ``NaN`` (not observed); batch labels
  ``target (N, K)`` with ``mask (N, K)``: a sample may be labelled for some labels only;
- manifest: one column ``<task>/<label>`` per label holding 0, 1 or nothing;
- loss: masked binary cross-entropy ``sum_ij m_ij BCE(y_ij, sigmoid(z_ij)) / sum_ij m_ij``,
  with optional positive weights ``w+_j`` for rare labels;
- metrics: mean per-label F1 (primary; the action-unit convention), accuracy, per-label F1;
- relatedness: the target of edges ``R[c, j] = p(b_j = 1 | a = c)`` (values in [0, 1]).

>>> au = BinarySetTask("au", ("AU1", "AU2"))
>>> au.parse_columns({"au/AU2": np.array(["1", "", "0"], dtype=object)}, 3).tolist()
[[nan, 1.0], [nan, nan], [nan, 0.0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dmtl.core.labels import TaskLabels
from dmtl.core.losses import masked_binary_cross_entropy, masked_mean
from dmtl.core.maps import full_precision, inverse_binary_log_posterior
from dmtl.core.tasks.base import check_names, check_task_name, register_task_kind
from dmtl.core.tasks.vector import VectorTask
from dmtl.errors import SpecError

if TYPE_CHECKING:
    from torchmetrics import Metric

    from dmtl.core.metrics import MetricKernel
    from dmtl.core.relatedness import Relatedness


@register_task_kind
@dataclass(frozen=True, repr=False)
class BinarySetTask(VectorTask):
    """Multi-label task: each of ``labels`` is present (1) or absent (0), independently.

    Training option (not part of the task's identity): ``pos_weight``, one positive
    weight per label (e.g. ``n_neg / n_pos`` from :meth:`balanced_weight`).
    """

    pos_weight: tuple[float, ...] | None = field(default=None, compare=False)

    kind = "binary_set"
    output_word = "label"
    output_words = "labels"
    primary_metric = "f1_mean"
    manifest_dtype = "Int8"
    can_be_edge_target = True

    def __init__(
        self, name: str, labels: Iterable[str], pos_weight: Iterable[float] | None = None
    ) -> None:
        object.__setattr__(self, "name", check_task_name(name))
        object.__setattr__(self, "names", check_names(name, "labels", labels, 1))
        weights = None if pos_weight is None else tuple(float(w) for w in pos_weight)
        if weights is not None and (
            len(weights) != len(self.names) or not all(w > 0 for w in weights)
        ):
            raise SpecError(
                f"task {name!r}: pos_weight needs {len(self.names)} positive numbers, "
                f"got {list(weights)}"
            )
        object.__setattr__(self, "pos_weight", weights)

    @property
    def labels(self) -> tuple[str, ...]:
        """Label names, in logit order."""
        return self.names

    @property
    def num_labels(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "labels": list(self.names),
            "pos_weight": None if self.pos_weight is None else list(self.pos_weight),
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> BinarySetTask:
        return cls(spec["name"], spec["labels"], spec.get("pos_weight"))

    # ---- encoded labels ---------------------------------------------------------------------

    def _valid_entries(self, values: np.ndarray) -> np.ndarray:
        return (values == 0) | (values == 1)

    def _expected(self) -> str:
        return "0 or 1"

    def _valid_targets(self, values: np.ndarray) -> np.ndarray:
        return (values >= 0) & (values <= 1)

    def _targets_expected(self) -> str:
        return "outside [0, 1]"

    def count_labels(self, values: np.ndarray) -> list[tuple[str, int, int | None]]:
        observed = ~np.isnan(values)
        return [
            (name, int(observed[:, j].sum()), int((values[:, j] == 1).sum()))
            for j, name in enumerate(self.names)
        ]

    def balanced_weight(self, values: np.ndarray) -> tuple[float, ...]:
        """``w+_j = n_neg,j / n_pos,j`` over the observed entries (each count at least 1)."""
        positives = np.maximum((values == 1).sum(axis=0), 1)
        negatives = np.maximum((values == 0).sum(axis=0), 1)
        return tuple(float(w) for w in negatives / positives)

    # ---- learning ---------------------------------------------------------------------------

    def loss(self, logits: Tensor, labels: TaskLabels) -> Tensor:
        weight = None if self.pos_weight is None else torch.tensor(self.pos_weight)
        return masked_binary_cross_entropy(logits, labels.target, labels.mask, weight)

    def predict(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def decide(self, outputs: Tensor, thresholds: Sequence[float] | None = None) -> np.ndarray:
        """``1[p_j >= threshold_j]`` per label (0.5 by default)."""
        limits = torch.tensor(thresholds if thresholds is not None else [0.5] * self.num_labels)
        return (outputs >= limits.to(outputs.dtype)).cpu().numpy().astype(np.float32)

    def metric(self, per_output: bool = True, **kwargs: Any) -> Metric:
        from dmtl.core.synced_metrics import BinarySetMetrics

        return BinarySetMetrics(self, per_output=per_output, **kwargs)

    def metric_kernel(self, per_output: bool = True, **kwargs: Any) -> MetricKernel:
        from dmtl.core.metrics import BinarySetKernel

        return BinarySetKernel(self, per_output=per_output, **kwargs)

    def metric_names(self, per_output: bool = True) -> list[str]:
        per = [f"f1/{name}" for name in self.names] if per_output else []
        return ["accuracy", "f1_mean", *per, "num_labelled"]

    # ---- relatedness ------------------------------------------------------------------------

    def check_table(self, table: Tensor, edge: Relatedness) -> None:
        """Values are probabilities ``p(b_j = 1 | a = c)``; [0, 1] is checked by the edge."""

    def restrict_table(self, table: Tensor) -> Tensor:
        """A subset of the labels keeps its columns as they are."""
        return table

    def evidence(self, labels: TaskLabels, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
        """Labels as evidence for an inverse map: 0/1 values, only the observed ones count."""
        return labels.target.to(dtype), labels.mask

    def indicator(self, labels: TaskLabels) -> tuple[Tensor, Tensor]:
        """``(values, observed)`` ``(N, K)`` for counting co-occurrences, per label."""
        observed = labels.mask.double()
        return labels.target.double() * observed, observed

    def inverse_log_posterior(
        self,
        evidence: Tensor,
        table: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``log q_A(c|x)`` by Bayes' rule with labels independent given the class.

        ``log q_A(c) ∝ log pi_c + (1/tau) sum_j m_j [s_j log R~[c,j] + (1-s_j) log(1-R~[c,j])]``
        (:func:`~dmtl.core.maps.inverse_binary_log_posterior`).
        """
        dtype = torch.promote_types(evidence.dtype, torch.float32)
        log_prior = None if prior is None else prior.to(evidence.device, dtype).log()
        return inverse_binary_log_posterior(evidence, table, observed, log_prior, eps, tau)

    def inverse_posterior(
        self,
        evidence: Tensor,
        table: Tensor,
        observed: Tensor | None = None,
        prior: Tensor | None = None,
        eps: float = 0.05,
        tau: float = 1.0,
    ) -> Tensor:
        """``q_A(c|x)``: the exponential of :meth:`inverse_log_posterior`."""
        return self.inverse_log_posterior(evidence, table, observed, prior, eps, tau).exp()

    def learning_mask(self, source_labelled: Tensor, labels: TaskLabels) -> Tensor:
        """Entries unobserved for this task on samples labelled for the source."""
        return source_labelled[:, None] & ~labels.mask

    def soft_target_loss(self, logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
        """Binary cross-entropy against soft targets ``q`` in [0, 1].

        With an entry mask ``m`` ``(N, K)``: ``sum_ij m_ij BCE(q_ij, sigmoid(z_ij)) / sum m``;
        with sample weights ``w`` ``(N,)``: ``sum_i w_i mean_j BCE(q_ij, sigmoid(z_ij)) / sum w``.
        """
        if weight.dim() == 2:
            return masked_binary_cross_entropy(logits, target, weight)
        per_sample = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return masked_mean(per_sample.mean(dim=-1), weight)

    @full_precision
    def harden(self, soft: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
        """``1[q_j >= 0.5]`` for every entry (``threshold`` applies to categorical targets)."""
        return (soft >= 0.5).to(soft.dtype), torch.ones_like(soft, dtype=torch.bool)


__all__ = ["BinarySetTask"]
